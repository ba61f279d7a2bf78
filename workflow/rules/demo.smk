# The offline demo: tiny models from transformers configs, a tokenizer trained here, and generated
# data in each task's hub layout. Only active when the config has a `demo` section (profiles/demo).

from transmod_demo.decoders import DECODER_MODELS
from transmod_demo.models import DEMO_MODELS

as_workflow_error(validate_section, config, "demo", Path(workflow.basedir) / "profiles/demo/demo.schema.yaml")
validate(config["demo"], Path(workflow.basedir) / "profiles/demo/demo.schema.yaml")  # its defaults

# The tasks whose data the demo generates: those that read resources/demo/data/<task>. The encoders' tokenizer
# and pre-training read the classification tasks' text; the decoders' pre-training reads all of it.
DEMO_DATA = {task: f"resources/demo/data/{task}" for task, spec in config["tasks"].items()
             if spec["dataset"] == f"resources/demo/data/{task}"}
ENCODER_DATA = {task: folder for task, folder in DEMO_DATA.items() if not DECLARED_TASKS[task].is_decoder}


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
        **ENCODER_DATA,
    output:
        directory("resources/demo/tokenizer"),
    params:
        langs={task: config["tasks"][task]["languages"] for task in ENCODER_DATA},
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
        **ENCODER_DATA,
        tokenizer="resources/demo/tokenizer",
    output:
        [directory(f"resources/demo/models/{name}") for name in DEMO_MODELS],
    params:
        langs={task: config["tasks"][task]["languages"] for task in ENCODER_DATA},
        pretrain_steps=config["demo"]["pretrain_steps"],
        builder="encoders",
    threads: 2
    log:
        "results/logs/demo_models.log",
    benchmark:
        "results/benchmarks/demo_models.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/demo_models.py"


rule demo_decoders:
    input:
        **DEMO_DATA,
        tokenizer="resources/demo/tokenizer",
    output:
        [directory(f"resources/demo/models/{name}") for name in DECODER_MODELS],
    params:
        langs={task: config["tasks"][task]["languages"] for task in DEMO_DATA},
        pretrain_steps=config["demo"]["pretrain_steps"],
        builder="decoders",
    threads: 1
    log:
        "results/logs/demo_decoders.log",
    benchmark:
        "results/benchmarks/demo_decoders.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/demo_models.py"
