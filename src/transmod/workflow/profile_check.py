"""Fail early, with a clear message, when a profile cannot run the workflow: a SLURM profile that still
has placeholders, or a GPU count below what each GPU job asks for.

profiles/slurm/config.yaml ships with ``slurm_partition: "<set-me>"`` and
``slurm_account: "<set-me>"``. Left unchanged, snakemake-executor-plugin-slurm
2.8.0 would only notice at submission time, one job at a time:

* ``slurm_partition``: sbatch answers "invalid partition specified: <set-me>";
  the plugin reports "SLURM sbatch failed" for every job, which then fails
  (and is retried ``retries`` times) before the run stops;
* ``slurm_account``: on clusters with accounting the plugin raises "The given
  account <set-me> appears to be invalid"; on clusters without accounting the
  account is not validated and sbatch even accepts ``-A '<set-me>'``.

Neither message names the profile key. :func:`check_slurm_profile` looks at
the resources of every rule (default-resources, the rule's own ``resources:``
and ``set-resources`` are already merged there while the Snakefile is parsed)
and raises one ``WorkflowError`` listing each key that still holds a
placeholder and where to set it. Call it at the very end of the Snakefile,
after all rules are defined::

    from transmod.workflow.profile_check import check_slurm_profile
    check_slurm_profile(workflow)

It runs before the DAG is built, so ``snakemake -n --profile profiles/slurm``
already fails, and it is skipped inside SLURM jobs (the jobs re-parse the
Snakefile).

:func:`check_gpu_count` compares the run's ``resources: gpu`` (profiles/local's
count of the machine's GPUs, or ``--resources``) with what each of the rules
that run models asks for (config ``gpus_per_job``): below it, Snakemake would
only stop at the first such job, blaming pipes or service outputs.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

# "<set-me>", "<SET_ME>", "< set me >" ...
PLACEHOLDER = re.compile(r"^\s*<\s*set[-_ ]?me\s*>\s*$", re.IGNORECASE)

#: resource name -> how to find a value for it
REQUIRED_KEYS: Mapping[str, str] = {
    "slurm_partition": "a partition listed by `sinfo -s`",
    "slurm_account": (
        "an account listed by `sacctmgr -n -s list user $USER format=account` "
        "(delete the line if your cluster has no accounts)"
    ),
}


def is_placeholder(value) -> bool:
    """True for a ``<set-me>``-style placeholder (str, or a Resource's raw)."""
    raw = getattr(value, "raw", value)
    return isinstance(raw, str) and bool(PLACEHOLDER.match(raw.strip("'\"")))


def find_placeholders(
    rule_resources: Mapping[str, Mapping], keys: Iterable[str] = REQUIRED_KEYS
) -> dict[str, list[str]]:
    """Map each key in ``keys`` to the sorted rule names where it is a placeholder.

    ``rule_resources`` maps rule name -> resources mapping (plain dicts, or
    snakemake ``Resources`` whose values are ``Resource`` objects).
    """
    found: dict[str, list[str]] = {}
    for rule, resources in rule_resources.items():
        for key in keys:
            if key in resources and is_placeholder(resources[key]):
                found.setdefault(key, []).append(rule)
    return {key: sorted(rules) for key, rules in found.items()}


def format_message(
    found: Mapping[str, list[str]],
    all_rules: Iterable[str],
    profile: str = "your SLURM profile's config.yaml",
) -> str:
    all_rules = set(all_rules)
    lines = ["The SLURM profile is not configured yet:"]
    for key, rules in found.items():
        if set(rules) >= all_rules:
            where = f"`default-resources: {key}`"
        else:
            where = f"`{key}` for rule(s) {', '.join(rules)} (check `set-resources:`)"
        lines.append(
            f"  * {where} is still a placeholder (\"<set-me>\"): set it in {profile} "
            f"to {REQUIRED_KEYS.get(key, 'a real value')}."
        )
    lines.append(
        "  (Do not set them with --default-resources/--set-resources on the command "
        "line: those replace the profile's whole key, e.g. runtime and mem_mb. "
        "To keep a separate copy, add a second profile with full "
        "default-resources: snakemake --profile profiles/slurm --profile my-site.)"
    )
    return "\n".join(lines)


def used_profiles(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> list[Path]:
    """The config files of the profiles this Snakemake run reads (`--profile`, else $SNAKEMAKE_PROFILE)."""
    from snakemake.cli import get_profile_dir

    argv = sys.argv if argv is None else argv
    env = os.environ if env is None else env
    names = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--profile"]
    names += [arg.split("=", 1)[1] for arg in argv if arg.startswith("--profile=")]
    if not names and env.get("SNAKEMAKE_PROFILE"):
        names = [env["SNAKEMAKE_PROFILE"]]
    found = [get_profile_dir(name) for name in names]
    return [entry[1] for entry in found if entry is not None]


def placeholder_file(profiles: Sequence[Path], keys: Iterable[str]) -> str:
    """The profile file that holds a placeholder for one of `keys` (the last one wins, as in Snakemake)."""
    for path in reversed(profiles):
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        if any(re.search(rf"{key}\s*[:=]\s*['\"]?<\s*set", text, re.IGNORECASE) for key in keys):
            return str(path)
    return str(profiles[-1]) if profiles else "your SLURM profile's config.yaml"


def check_slurm_profile(workflow, profiles: Sequence[Path] | None = None) -> None:
    """Raise ``WorkflowError`` if any rule still has a ``<set-me>`` placeholder, naming the profile file
    that holds it (``profiles``: the run's profile files, read from its command line by default).

    ``workflow`` is the ``workflow`` object available in every Snakefile.
    """
    from snakemake.exceptions import WorkflowError

    # Inside a SLURM job (slurm-jobstep executor) the Snakefile is parsed
    # again; the main process has already checked.
    if getattr(workflow, "remote_exec", False):
        return
    rule_resources = {rule.name: rule.resources for rule in workflow.rules}
    found = find_placeholders(rule_resources)
    if found:
        where = placeholder_file(used_profiles() if profiles is None else profiles, found)
        raise WorkflowError(format_message(found, rule_resources, where))


def check_gpu_count(workflow, per_job: int) -> None:
    """Raise ``WorkflowError`` where the run gives fewer GPUs (``resources: gpu``) than one GPU job asks for
    (``per_job``, config ``gpus_per_job``), naming both keys."""
    from snakemake.exceptions import WorkflowError

    if getattr(workflow, "remote_exec", False) or getattr(workflow, "subprocess_exec", False):
        return  # a job's own process: the main one has checked
    given = workflow.global_resources["gpu"].value if "gpu" in workflow.global_resources else None
    if given is not None and given < per_job:
        raise WorkflowError(
            f"`resources: gpu` is {given} (the profile's or --resources), below the {per_job} GPU that each "
            f"training and sampling job asks for (`gpus_per_job: {per_job}` of the config): none of them could "
            "start; set `resources: gpu` to this machine's GPUs, or `gpus_per_job: 0` in config.yaml where it has "
            "none"
        )
