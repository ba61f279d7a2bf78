# The offline demo: tiny models from transformers configs, a tokenizer trained here, and generated
# data in each task's hub layout. Only active with `demo: true` (profiles/demo).

DEMO = "resources/demo"
DEMO_MODELS = ["teacher-bert", "student-distilbert", "teacher-xlmr", "student-xlmr"]


rule demo_data:
    output:
        directory(DEMO + "/data/{task}"),
    params:
        langs=lambda w: config["tasks"][w.task]["languages"],
        sizes=config.get("demo_sizes", {}),
    log:
        R + "/logs/demo_data/{task}.log",
    benchmark:
        R + "/benchmarks/demo_data/{task}.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/demo_data.py"


rule demo_tokenizer:
    input:
        **{task: f"{DEMO}/data/{task}" for task in config["tasks"]},
    output:
        directory(DEMO + "/tokenizer"),
    params:
        langs={task: spec["languages"] for task, spec in config["tasks"].items()},
    log:
        R + "/logs/demo_tokenizer.log",
    benchmark:
        R + "/benchmarks/demo_tokenizer.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/demo_tokenizer.py"


rule demo_models:
    input:
        DEMO + "/tokenizer",
    output:
        [directory(f"{DEMO}/models/{name}") for name in DEMO_MODELS],
    log:
        R + "/logs/demo_models.log",
    benchmark:
        R + "/benchmarks/demo_models.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/demo_models.py"
