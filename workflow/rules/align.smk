# Sample -> correlate -> assign (the study's lsa alignment) or fit another alignment -> prune & align. Sampling reads the frozen base models only, so it
# runs beside teacher training; prune_align joins the two branches.


# Samples are keyed by model and module type: a model shared by pairs is sampled once, and a
# LoRA-only setting (alignment.lora_b) never re-samples for adapters.
rule sample_embeddings:
    input:
        model=model_input(),
        data=dataset_input,
    output:
        "results/samples/{model}/{task}/{lang}/{peft}.parquet",
    params:
        model=model_of(),
        dataset=dataset_of,
        task=task_of,
        split=config["sampling"]["split"],
        max_tokens=config["sampling"]["max_tokens"],
        batch_size=config["sampling"]["batch_size"],
        dtype=config["sampling"]["dtype"],
        lora_outputs=lambda w: lora_b(w) == "output",
    log:
        "results/logs/sample_embeddings/{model}/{task}/{lang}/{peft}.log",
    benchmark:
        "results/benchmarks/sample_embeddings/{model}/{task}/{lang}/{peft}.tsv"
    threads: 1
    resources:
        gpu=GPUS_PER_JOB,  # the forward passes run on the GPU when there is one
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/sample_embeddings.py"


rule correlate:
    input:
        teacher=samples_of("teacher"),
        student=samples_of("student"),
    output:
        "results/align/{pair}/{task}/{lang}/{peft}/{mapping}.correlation.safetensors",
    params:
        holdout=config["alignment"]["holdout"],
    log:
        "results/logs/correlate/{pair}/{task}/{lang}/{peft}/{mapping}.log",
    benchmark:
        "results/benchmarks/correlate/{pair}/{task}/{lang}/{peft}/{mapping}.tsv"
    threads: 4  # layer pairs updated side by side
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/correlate.py"


rule solve_lsa:
    input:
        "results/align/{pair}/{task}/{lang}/{peft}/{mapping}.correlation.safetensors",
    output:
        "results/align/{pair}/{task}/{lang}/{peft}/{mapping}.lsa.alignment.safetensors",
    log:
        "results/logs/solve_lsa/{pair}/{task}/{lang}/{peft}/{mapping}.log",
    benchmark:
        "results/benchmarks/solve_lsa/{pair}/{task}/{lang}/{peft}/{mapping}.tsv"
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/solve_lsa.py"


if EXTRA_METHODS:

    rule fit_alignment:
        input:
            teacher=samples_of("teacher"),
            student=samples_of("student"),
        output:
            expand(
                "results/align/{{pair}}/{{task}}/{{lang}}/{{peft}}/{{mapping}}.{method}.alignment.safetensors",
                method=EXTRA_METHODS,
            ),
        params:
            methods=EXTRA_METHODS,
            holdout=config["alignment"]["holdout"],
        log:
            "results/logs/fit_alignment/{pair}/{task}/{lang}/{peft}/{mapping}.log",
        benchmark:
            "results/benchmarks/fit_alignment/{pair}/{task}/{lang}/{peft}/{mapping}.tsv"
        threads: 4  # layer pairs updated side by side
        conda:
            "../envs/transmod.yaml"
        script:
            "../scripts/fit_alignment.py"


rule prune_align:
    input:
        unpack(start_inputs),
        module=lambda w: f"{teacher_run(w)}/{MODULE_DIR}",
        teacher=model_input("teacher"),
        student=model_input("student"),
    output:
        directory("results/transferred/{pair}/{task}/{lang}/{peft}/{init}/seed{seed}"),
    params:
        teacher=model_of("teacher"),
        student=model_of("student"),
        methods=start_methods,
        lora_b=lora_b,
        holdout=config["alignment"]["holdout"],
        healing=lambda w: config["alignment"]["heal"] if init_of(w).heal else None,  # re-runs only healed starts
    log:
        "results/logs/prune_align/{pair}/{task}/{lang}/{peft}/{init}/seed{seed}.log",
    benchmark:
        "results/benchmarks/prune_align/{pair}/{task}/{lang}/{peft}/{init}/seed{seed}.tsv"
    wildcard_constraints:
        init=transfer_pattern(),  # zero-shot runs reuse these
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/prune_align.py"


rule fidelity:
    input:
        unpack(fidelity_alignments),
        module=lambda w: f"{teacher_run(w)}/{MODULE_DIR}",
        teacher=samples_of("teacher"),
        student=samples_of("student"),
        teacher_model=model_input("teacher"),
        student_model=model_input("student"),
    output:
        FIDELITY,
    params:
        teacher=model_of("teacher"),
        student=model_of("student"),
        inits=lambda w: [init.name for init in fidelity_inits(w.pair)],
        holdout=config["alignment"]["holdout"],
        lora_b=lora_b,
    log:
        "results/logs/fidelity/{pair}/{task}/{lang}/{peft}/seed{seed}.log",
    benchmark:
        "results/benchmarks/fidelity/{pair}/{task}/{lang}/{peft}/seed{seed}.tsv"
    threads: 2  # BLAS threads of the effect products
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/fidelity.py"

