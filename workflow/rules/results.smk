# Test metrics of every run, then the tables.


rule evaluate:
    input:
        RUN + "/{run}/seed{seed}/test_predictions.json",
    output:
        RUN + "/{run}/seed{seed}/metrics.json",
    params:
        info=run_info,
    log:
        R + "/logs/evaluate/{pair}/{task}/{lang}/{peft}/{run}/seed{seed}.log",
    benchmark:
        R + "/benchmarks/evaluate/{pair}/{task}/{lang}/{peft}/{run}/seed{seed}.tsv"
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
        summary=multiext(R + "/tables/summary", ".md", ".csv", ".tex"),
        per_language=expand(
            R + "/tables/{task}{ext}",
            task=sorted({t for p in config["pairs"].values() for t in p["tasks"]}),
            ext=(".md", ".csv", ".tex"),
        ),
    params:
        outdir=R + "/tables",
        languages={
            task: config["tasks"][task]["languages"]
            for task in sorted({t for p in config["pairs"].values() for t in p["tasks"]})
        },
    log:
        R + "/logs/aggregate_tables.log",
    benchmark:
        R + "/benchmarks/aggregate_tables.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/aggregate_tables.py"
