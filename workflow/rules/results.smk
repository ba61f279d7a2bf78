# Test metrics of every run, then the tables, plots and the report's pages (docs/method.md, section 11).
#
# aggregate_tables (part of `all`) waits for every metrics and fidelity file of the config; `transmod tables
# results` writes the same files, the fidelity table included, from whatever runs have finished, training
# nothing (a run without a metrics file is an empty cell with a footnote). Both refuse metrics files that
# another config wrote.


rule evaluate:
    input:
        predictions,
    output:
        "results/runs/{pair}/{task}/{lang}/{peft}/{run}/seed{seed}/metrics.json",
    params:
        info=run_info,
        task=task_of,
    log:
        "results/logs/evaluate/{pair}/{task}/{lang}/{peft}/{run}/seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate/{pair}/{task}/{lang}/{peft}/{run}/seed{seed}.tsv"
    wildcard_constraints:
        run=run_pattern(),  # teacher, or student-<init> (default, skip, avg-procrustes, ...)
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/evaluate.py"


# The runs the config requests, written first (no inputs, top priority): `transmod tables results` reads it
# to regenerate the tables from whatever runs have finished, even while the grid still runs.
rule plan:
    output:
        PLAN,
    params:
        plan=RESULTS_PLAN,
    log:
        "results/logs/plan.log",
    localrule: True
    priority: 100
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/plan.py"


rule aggregate_tables:
    input:
        plan=PLAN,
        metrics=all_metrics(),
        fidelity=fidelity_files(),
        assignments=[a["assignment"] for a in RESULTS_PLAN["align"]],
        correlations=heatmap_inputs(),
    output:
        **results_outputs(),
    params:
        plan=RESULTS_PLAN,
    log:
        "results/logs/aggregate_tables.log",
    benchmark:
        "results/benchmarks/aggregate_tables.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/aggregate_tables.py"
