# The offline demo: tiny models from transformers configs, a tokenizer trained here, and generated
# data in each task's hub layout. Only active when the config has a `demo` section (profiles/demo).

from transmod_demo.models import DEMO_MODELS

as_workflow_error(validate_section, config, "demo", Path(workflow.basedir) / "profiles/demo/demo.schema.yaml")
validate(config["demo"], Path(workflow.basedir) / "profiles/demo/demo.schema.yaml")  # its defaults

# The tasks whose data the demo generates: those that read resources/demo/data/<task>.
DEMO_DATA = {task: f"resources/demo/data/{task}" for task, spec in config["tasks"].items()
             if spec["dataset"] == f"resources/demo/data/{task}"}


rule demo_data:
    output:
        directory("resources/demo/data/{task}"),
    params:
        task=task_of,
        langs=lambda w: config["tasks"][w.task]["languages"],
        sizes=config["demo"]["sizes"],
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
        **DEMO_DATA,
    output:
        directory("resources/demo/tokenizer"),
    params:
        langs={task: config["tasks"][task]["languages"] for task in DEMO_DATA},
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
        **DEMO_DATA,
        tokenizer="resources/demo/tokenizer",
    output:
        [directory(f"resources/demo/models/{name}") for name in DEMO_MODELS],
    params:
        langs={task: config["tasks"][task]["languages"] for task in DEMO_DATA},
        pretrain_steps=config["demo"]["pretrain_steps"],
    threads: 2
    log:
        "results/logs/demo_models.log",
    benchmark:
        "results/benchmarks/demo_models.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/demo_models.py"
