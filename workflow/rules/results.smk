# Test metrics of every run, then the tables, plots and the report's pages (DESIGN.md section 7).
#
# aggregate_tables (part of `all`) waits for every metrics file of the config. `tables` writes the same
# files from whatever runs have finished, training nothing: a run without a metrics file (a failed job
# under --keep-going, or one not run yet) is an empty cell with a footnote. Both refuse metrics files
# that another config wrote. Regenerate and view:
#   snakemake tables --profile profiles/demo && snakemake tables --profile profiles/demo --report report.html

include: "results_common.smk"


report: "../report/workflow.rst"


rule evaluate:
    input:
        predictions,
    output:
        "results/runs/{pair}/{task}/{lang}/{peft}/{run}/seed{seed}/metrics.json",
    params:
        info=run_info,
    log:
        "results/logs/evaluate/{pair}/{task}/{lang}/{peft}/{run}/seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate/{pair}/{task}/{lang}/{peft}/{run}/seed{seed}.tsv"
    wildcard_constraints:
        run=r"teacher|student-[a-z][a-z0-9-]*",  # every init of common.smk (default, skip, avg-procrustes, ...)
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/evaluate.py"


# Both rules write the same files; a plain `snakemake` (rule all) always builds them with aggregate_tables.
ruleorder: aggregate_tables > tables


rule aggregate_tables:
    input:
        metrics=all_metrics(),
        assignments=[a["assignment"] for a in RESULTS_PLAN["align"]],
        correlations=heatmap_inputs(),
    output:
        **results_outputs(),
    params:
        **RESULTS_PARAMS,
    log:
        "results/logs/aggregate_tables.log",
    benchmark:
        "results/benchmarks/aggregate_tables.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/aggregate_tables.py"


rule tables:
    output:
        **kept_on_failure(results_outputs()),
    params:
        **RESULTS_PARAMS,
        fingerprint=results_fingerprint,
    log:
        "results/logs/tables.log",
    benchmark:
        "results/benchmarks/tables.tsv"
    localrule: True
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/aggregate_tables.py"
