# transmod: does a module transferred from a teacher model beat the student's default start?
# Thin entry point: config, validation, includes, targets. Logic lives in src/transmod.

from pathlib import Path

from transmod.workflow.config import as_workflow_error, check_config_files

as_workflow_error(check_config_files, [Path(workflow.basedir) / "config.yaml"])  # a YAML error: file and line


configfile: Path(workflow.basedir) / "config.yaml"


include: "workflow/rules/common.smk"
if config.get("demo"):

    include: "workflow/rules/demo.smk"


if config.get("minilm"):

    include: "workflow/rules/minilm.smk"


include: "workflow/rules/assets.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/align.smk"
include: "workflow/rules/results.smk"


rule all:
    input:
        all_targets(),
    default_target: True


check_slurm_profile(workflow)  # a SLURM profile with "<set-me>" left stops here, naming the key
