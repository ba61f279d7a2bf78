# Test metrics of every run, then the tables.


rule evaluate:
    input:
        "results/runs/{pair}/{task}/{lang}/{peft}/{run}/seed{seed}/test_predictions.json",
    output:
        "results/runs/{pair}/{task}/{lang}/{peft}/{run}/seed{seed}/metrics.json",
    params:
        info=run_info,
    log:
        "results/logs/evaluate/{pair}/{task}/{lang}/{peft}/{run}/seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate/{pair}/{task}/{lang}/{peft}/{run}/seed{seed}.tsv"
    wildcard_constraints:
        run="teacher|student-(default|skip|avg)",
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/evaluate.py"


rule aggregate_tables:
    input:
        all_metrics(),
    output:
        summary=multiext("results/tables/summary", ".md", ".csv", ".tex"),
        per_language=expand(
            "results/tables/{task}{ext}",
            task=sorted({t for p in config["pairs"].values() for t in p["tasks"]}),
            ext=(".md", ".csv", ".tex"),
        ),
    params:
        outdir=lambda w, output: Path(output.summary[0]).parent,
        languages={
            task: config["tasks"][task]["languages"]
            for task in sorted({t for p in config["pairs"].values() for t in p["tasks"]})
        },
    log:
        "results/logs/aggregate_tables.log",
    benchmark:
        "results/benchmarks/aggregate_tables.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/aggregate_tables.py"
