# Teacher and student training. Both write the best module, head, history and test predictions.


# A teacher run is keyed by its model, not by the pair: pairs that share a teacher train it once.
rule train_teacher:
    input:
        model=model_input(),
        data=dataset_input,
    output:
        **run_outputs(TEACHER),
    params:
        model=model_of(),
        dataset=dataset_of,
        task=task_of,
        hyper=hyper("teacher"),
        module=module_config,
        state=f"{TEACHER}/{STATE_DIR}",
        token_cache="results/cache/tokens",
    log:
        "results/logs/train_teacher/{model}/{task}/{lang}/{peft}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train_teacher/{model}/{task}/{lang}/{peft}/seed{seed}.tsv"
    priority: 1  # every transfer waits for its teacher: schedule teachers before the alignment jobs
    threads: 1
    resources:
        gpu=GPUS_PER_JOB,
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/train.py"


rule train_student:
    input:
        model=model_input("student"),
        data=dataset_input,
        init=init_module,
    output:
        **run_outputs(STUDENT),
    params:
        model=model_of("student"),
        dataset=dataset_of,
        task=task_of,
        hyper=hyper("student"),
        module=module_config,
        state=f"{STUDENT}/{STATE_DIR}",
        token_cache="results/cache/tokens",
    log:
        "results/logs/train_student/{pair}/{task}/{lang}/{peft}/{init}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train_student/{pair}/{task}/{lang}/{peft}/{init}/seed{seed}.tsv"
    threads: 1
    resources:
        gpu=GPUS_PER_JOB,
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/train.py"
