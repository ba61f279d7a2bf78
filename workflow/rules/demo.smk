# The offline demo: tiny models from transformers configs, a tokenizer trained here, and generated
# data in each task's hub layout. Only active with `demo: true` (profiles/demo).

DEMO = "resources/demo"
DEMO_MODELS = ["teacher-bert", "student-distilbert", "teacher-xlmr", "student-xlmr"]


rule demo_data:
    output:
        directory("resources/demo/data/{task}"),
    params:
        langs=lambda w: config["tasks"][w.task]["languages"],
        sizes=config.get("demo_sizes", {}),
    log:
        "results/logs/demo_data/{task}.log",
    benchmark:
        "results/benchmarks/demo_data/{task}.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/demo_data.py"


rule demo_tokenizer:
    input:
        **{task: f"resources/demo/data/{task}" for task in config["tasks"]},
    output:
        directory("resources/demo/tokenizer"),
    params:
        langs={task: spec["languages"] for task, spec in config["tasks"].items()},
    log:
        "results/logs/demo_tokenizer.log",
    benchmark:
        "results/benchmarks/demo_tokenizer.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/demo_tokenizer.py"


rule demo_models:
    input:
        **{task: f"resources/demo/data/{task}" for task in config["tasks"]},
        tokenizer="resources/demo/tokenizer",
    output:
        [directory(f"resources/demo/models/{name}") for name in DEMO_MODELS],
    params:
        langs={task: spec["languages"] for task, spec in config["tasks"].items()},
        pretrain_steps=config.get("demo_pretrain_steps", 0),
    threads: 2
    log:
        "results/logs/demo_models.log",
    benchmark:
        "results/benchmarks/demo_models.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/demo_models.py"
