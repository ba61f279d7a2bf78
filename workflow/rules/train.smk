# Teacher and student training. Both write the best module, head, history and test predictions.


rule train_teacher:
    input:
        model=model_input("teacher"),
        data=dataset_input,
    output:
        module=directory(RUN + "/teacher/seed{seed}/module"),
        head=RUN + "/teacher/seed{seed}/head.safetensors",
        history=RUN + "/teacher/seed{seed}/history.json",
        predictions=RUN + "/teacher/seed{seed}/test_predictions.json",
    params:
        model=model_of("teacher"),
        dataset=lambda w: config["tasks"][w.task]["dataset"],
        hyper=hyper("teacher"),
        module=module_config,
        state=RUN + "/teacher/seed{seed}/train_state",
    log:
        R + "/logs/train_teacher/{pair}/{task}/{lang}/{peft}/seed{seed}.log",
    benchmark:
        R + "/benchmarks/train_teacher/{pair}/{task}/{lang}/{peft}/seed{seed}.tsv"
    threads: 1
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
        module=directory(RUN + "/student-{init}/seed{seed}/module"),
        head=RUN + "/student-{init}/seed{seed}/head.safetensors",
        history=RUN + "/student-{init}/seed{seed}/history.json",
        predictions=RUN + "/student-{init}/seed{seed}/test_predictions.json",
    params:
        model=model_of("student"),
        dataset=lambda w: config["tasks"][w.task]["dataset"],
        hyper=hyper("student"),
        module=module_config,
        state=RUN + "/student-{init}/seed{seed}/train_state",
    log:
        R + "/logs/train_student/{pair}/{task}/{lang}/{peft}/{init}/seed{seed}.log",
    benchmark:
        R + "/benchmarks/train_student/{pair}/{task}/{lang}/{peft}/{init}/seed{seed}.tsv"
    threads: 1
    conda:
        "../envs/transmod.yaml"
    script:
        "../scripts/train.py"
