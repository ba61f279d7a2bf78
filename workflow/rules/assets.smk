# Offline compute nodes: fetch every hub model and dataset once, where the network is.


localrules:
    fetch_assets,


rule fetch_assets:
    output:
        directory("resources/assets/{kind}/{repo}"),
    params:
        task=lambda w: DECLARED_TASKS[asset_task(w.repo)].to_dict(display=False) if w.kind == "datasets" else None,
        languages=lambda w: config["tasks"][asset_task(w.repo)]["languages"] if w.kind == "datasets" else [],
    log:
        "results/logs/fetch_assets/{kind}/{repo}.log",
    benchmark:
        "results/benchmarks/fetch_assets/{kind}/{repo}.tsv"
    wildcard_constraints:
        kind="models|datasets",
        repo=r"[\w.-]+(/[\w.-]+)?",
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/fetch_assets.py"
