# transmod: does a module transferred from a teacher model beat the student's default start?
# Thin entry point: config, validation, includes, targets. Logic lives in src/transmod.

import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")

# The library in src/ serves this process and every job's script, also in a conda environment that
# holds the third-party packages only (workflow/envs/transmod.yaml): no install of transmod needed.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)

from transmod.workflow.config import as_workflow_error, check_config_files, validate_config, validate_section
from transmod.workflow.joblog import add_to_pythonpath
from transmod.workflow.profile_check import check_gpu_count, check_slurm_profile

add_to_pythonpath(SRC)
# A YAML error or YTE templating (`__use_yte__`, which would run Python) in config.yaml: file and line, before
# `configfile:` reads it. Snakemake reads a --configfile before this line: validate_config refuses it afterwards.
as_workflow_error(check_config_files, [Path(workflow.basedir) / "config.yaml"])


configfile: Path(workflow.basedir) / "config.yaml"


report: "workflow/report/workflow.rst"


SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
# One line naming the file or key; local task data is read once, where Snakemake starts (not in each job).
as_workflow_error(validate_config, config, SCHEMA, workflow.configfiles, not (workflow.remote_exec or workflow.subprocess_exec))
validate(config, SCHEMA)  # the schema's defaults, filled in


include: "workflow/rules/common.smk"
# The demo's and the real-weights profile's builders (workflow/demo/transmod_demo) are not in the library: only
# their profiles put them on the path, of this process and of every job, as src above.
PROFILES = ("demo", "minilm", "smollm2")  # each profile's own config section, and its rules
if any(name in config for name in PROFILES):
    DEMO = str(Path(workflow.basedir) / "workflow" / "demo")
    sys.path.insert(0, DEMO)
    add_to_pythonpath(DEMO)
if "demo" in config:

    include: "workflow/rules/demo.smk"


if "minilm" in config:

    include: "workflow/rules/minilm.smk"


if "smollm2" in config:

    include: "workflow/rules/smollm2.smk"


include: "workflow/rules/assets.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/results_common.smk"  # in_report, used by align.smk and results.smk
include: "workflow/rules/align.smk"
include: "workflow/rules/results.smk"


rule all:
    input:
        all_targets(),
    default_target: True


check_slurm_profile(workflow)  # a SLURM profile with "<set-me>" left stops here, naming the key
check_gpu_count(workflow, config["gpus_per_job"])  # fewer GPUs than a GPU job asks for: stop here, naming both keys
