# Input functions and the paths they build, shared by every rule file.

import os
import re
from pathlib import Path

from transmod.align.methods import grid_methods
from transmod.align.inits import (
    DEFAULT,
    STUDY_METHOD,
    TEACHER_RUN,
    Init,
    init_pattern,
    parse_run,
    run_name,
    run_pattern,
    transfer_pattern,
)
from transmod.align.layermap import MAPPINGS, SAMPLED_MAPPINGS, mapping_names
from transmod.hub import looks_local, slug
from transmod.modules.kinds import KINDS
from transmod.train.files import HEAD_FILE, HISTORY_FILE, MODULE_DIR, PREDICTIONS_FILE, STATE_DIR
from transmod.workflow.config import declared_tasks, inits_of, pair_is_decoder, pefts_of

RUN = "results/runs/{pair}/{task}/{lang}/{peft}"
ALIGN = "results/align/{pair}/{task}/{lang}/{peft}"
# A teacher run and a model's samples depend on the model, not on the pair: pairs that share a
# teacher (one teacher, several candidate students) share its runs and samples.
TEACHER = "results/teachers/{model}/{task}/{lang}/{peft}/seed{seed}"
STUDENT = f"{RUN}/student-{{init}}/seed{{seed}}"
SAMPLES = "results/samples/{model}/{task}/{lang}/{peft}.parquet"
FIDELITY = "results/fidelity/{pair}/{task}/{lang}/{peft}/seed{seed}.json"


MODELS = {slug(spec[role]): spec[role] for spec in config["pairs"].values() for role in ("teacher", "student")}
DECLARED_TASKS = declared_tasks(config)  # every task's declaration (the built-in ones filled in)
DECODER_PAIRS = {pair for pair in config["pairs"] if pair_is_decoder(config, pair, DECLARED_TASKS)}  # read once
# `resources: gpu` of the rules that run models on a GPU when there is one (training, sampling): the rule says
# that it needs one, a profile only how many the machine has (profiles/local: `resources: gpu`).
GPUS_PER_JOB = config["gpus_per_job"]


wildcard_constraints:
    model="|".join(re.escape(m) for m in MODELS),
    pair="|".join(config["pairs"]),
    task="|".join(re.escape(t) for t in DECLARED_TASKS),
    lang="[a-z]{2,3}",
    peft="|".join(KINDS),
    init=init_pattern(),
    mapping="|".join(mapping_names()),
    method="|".join(re.escape(m) for m in grid_methods()),
    seed=r"\d+",


def grid():
    """Every (pair, task, lang, peft) of the study, as wildcard dicts."""
    for pair, spec in config["pairs"].items():
        for task in spec["tasks"]:
            for lang in config["tasks"][task]["languages"]:
                for peft in pefts_of(config, pair)[1]:
                    yield dict(pair=pair, task=task, lang=lang, peft=peft)


def all_targets():
    targets = ["results/tables/summary.md", "results/tables/fidelity.md"]
    for w in grid():
        targets += expand(f"{ALIGN}/{{mapping}}.lsa.alignment.safetensors", mapping=list(MAPPINGS), **w)
        targets += [FIDELITY.format(**w, seed=seed) for seed in config["seeds"]]
    return targets


def fidelity_files():
    """Every fidelity file of the grid (one per cell and seed): the fidelity table's inputs."""
    return [FIDELITY.format(**w, seed=seed) for w in grid() for seed in config["seeds"]]


def fidelity_inits(pair):
    """Every mapping x alignment method measured without training (unaligned pairs: the mappings only; a layer
    map chosen on samples where the pair's inits use it)."""
    methods = config["alignment"]["methods"] if config["pairs"][pair]["aligned"] else [STUDY_METHOD]
    sampled = [m for m in SAMPLED_MAPPINGS if any(init.mapping == m for init in inits(pair))]
    return [Init(m, method) for m in [*MAPPINGS, *sampled] for method in methods]


EXTRA_METHODS = [m for m in config["alignment"]["methods"] if m != STUDY_METHOD]


def fidelity_alignments(w):
    """Every alignment file the fidelity job of a grid cell transfers with, keyed by init."""
    files = {}
    for init in fidelity_inits(w.pair):
        files.update({f"{init.name}.{k}": v for k, v in alignment_files(w.pair, w.task, w.lang, w.peft, init).items()})
    return files


def inits(pair):
    """Student inits of a pair (its own `inits`, else the top-level ones); with any zero-shot or light init
    (`zs-skip`, `lt-skip`, ...), also its baseline (`zs-default`, `lt-default`: a fresh module, same budget)."""
    chosen = inits_of(config, pair)[1]  # validated: methods only where aligned
    for init in list(chosen):
        if init.baseline != DEFAULT and init.baseline not in chosen:
            chosen.append(init.baseline)
    return chosen


def requested_runs():
    """Every run the config requests, in the tables' order: (grid cell, student init or None for the teacher, seed)."""
    for w in grid():
        for init in [None, *inits(w["pair"])]:
            for seed in config["seeds"]:
                yield w, init, seed


def metrics_file(w, init, seed):
    return f"{RUN.format(**w)}/{run_name(init)}/seed{seed}/metrics.json"


def all_metrics():
    return [metrics_file(*run) for run in requested_runs()]


def zero_shot_metrics():
    """Metrics of the zero-shot runs of transferred modules (`zs-skip`, ...), shown beside fidelity."""
    return [metrics_file(w, init, seed) for w, init, seed in requested_runs()
            if init is not None and init.zero_shot and init.transferred]


def asset_task(repo):
    """The task whose dataset is this hub id (fetch_assets writes it in that task's schema)."""
    return next(task for task, spec in config["tasks"].items() if spec["dataset"] == repo)


def task_of(w):
    """What a job needs of the task's declaration (table names and captions are left out: they re-run nothing)."""
    return DECLARED_TASKS[w.task].to_dict(display=False)


def is_local(path):
    """Local folders (and the demo's built assets) are tracked inputs; hub ids are not files."""
    return path.startswith("resources/") or looks_local(path)


def local(path):
    return [path] if is_local(path) else []


FETCH = config["assets"]["fetch"]
if FETCH:  # every job but fetch_assets reads local copies; compute nodes need no network
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")


def resolve(kind, name):
    """Where jobs read a model or dataset: its fetched copy under resources/assets when assets.fetch is on."""
    return f"resources/assets/{kind}/{name}" if FETCH and not is_local(name) else name


def model_of(role=None):
    """The model of a pair's role, or (no role) the one the `model` wildcard names."""
    return lambda w: resolve("models", config["pairs"][w.pair][role] if role else MODELS[w.model])


def dataset_of(w):
    return resolve("datasets", config["tasks"][w.task]["dataset"])


def model_input(role=None):
    return lambda w: local(model_of(role)(w))


def dataset_input(w):
    return local(dataset_of(w))


def teacher_run(w):
    """The run folder of a pair's teacher (shared by every pair with that teacher)."""
    return TEACHER.format(model=slug(config["pairs"][w.pair]["teacher"]), task=w.task, lang=w.lang, peft=w.peft,
                          seed=w.seed)


def samples_of(role):
    """The sample file of a pair's teacher or student model, on the cell's task and language."""
    return lambda w: SAMPLES.format(model=slug(config["pairs"][w.pair][role]), task=w.task, lang=w.lang, peft=w.peft)


def predictions(w):
    """The test predictions of a run of the grid: a student's own, or the (shared) teacher run's."""
    folder = teacher_run(w) if w.run == TEACHER_RUN else f"{RUN.format(**w)}/{w.run}/seed{w.seed}"
    return f"{folder}/{PREDICTIONS_FILE}"


def run_outputs(folder):
    """What a training run writes (transmod.train.files), as a rule's outputs."""
    return dict(module=directory(f"{folder}/{MODULE_DIR}"), head=f"{folder}/{HEAD_FILE}",
                history=f"{folder}/{HISTORY_FILE}", predictions=f"{folder}/{PREDICTIONS_FILE}")


def lora_b(w):
    """`alignment.lora_b` for an encoder's LoRA jobs; adapter jobs (which have no B) and a decoder's LoRA (each of
    whose projections writes a space of its own, aligned as such) always see the default, so changing it never
    re-runs them."""
    pairs = [w.pair] if "pair" in w.keys() else [  # jobs keyed by model (sampling): the pairs of that model
        pair for pair, spec in config["pairs"].items() if w.model in (slug(spec["teacher"]), slug(spec["student"]))]
    decoder = any(pair in DECODER_PAIRS for pair in pairs)
    return config["alignment"]["lora_b"] if w.peft == "lora" and not decoder else "study"


def hyper(role):
    """Training hyper-parameters of a role, with the task's overrides applied; a zero-shot student
    run (`zs-` init) then takes the `zero_shot` budget and trains its head only, a light one (`lt-`) the
    `light` budget."""

    def params(w):
        merged = dict(config["training"][role])
        merged.update(config["tasks"][w.task]["training"][role])
        init = init_of(w)
        if init is not None and init.zero_shot:
            merged.update(config["zero_shot"], freeze_module=True)
        elif init is not None and init.light:
            merged.update(config["light"])
        return merged

    return params


def init_of(w):
    """The student init a job's wildcards name (`init`, or the `run` folder); None for a teacher's job."""
    if hasattr(w, "init"):
        return Init.parse(w.init, "wildcard init")
    return parse_run(w.run, "wildcard run") if hasattr(w, "run") else None


def module_config(w):
    return dict(config["modules"].get(w.peft, {}))


def init_module(w):
    """The transferred module a student run starts from (none for the default init)."""
    init = init_of(w).base  # zero-shot and light runs start from the same transferred module
    if not init.transferred:
        return []
    return f"results/transferred/{w.pair}/{w.task}/{w.lang}/{w.peft}/{init.name}/seed{w.seed}"


def alignment_files(pair, task, lang, peft, init):
    """What a transfer aligns with: nothing (identity) for unaligned pairs and `copy`, else the alignment file of
    the init's method (`lsa`, the study's, from solve_lsa; the others from fit_alignment)."""
    if not config["pairs"][pair]["aligned"] or init.copy:
        return {}
    folder = ALIGN.format(pair=pair, task=task, lang=lang, peft=peft)
    return {"alignment": f"{folder}/{init.mapping}.{init.method}.alignment.safetensors"}


def start_methods(w):
    """The alignment methods a transferred init may use: its own, or for `auto` every method fidelity measured."""
    init = init_of(w)
    return [i.method for i in fidelity_inits(w.pair) if i.mapping == init.mapping] if init.auto else [init.method]


def start_inputs(w):
    """What prune_align reads besides the teacher's module: each of `start_methods`' alignment files (none for an
    unaligned pair), the cell's fidelity file for `auto`, and for `-heal` the two sample files it heals on."""
    init = init_of(w)
    files = {f"alignment_{method}": file for method in start_methods(w)
             for file in alignment_files(w.pair, w.task, w.lang, w.peft, Init(init.mapping, method)).values()}
    if init.auto:
        files["fidelity"] = FIDELITY.format(**w)
    if init.heal:
        files.update(teacher_samples=samples_of("teacher")(w), student_samples=samples_of("student")(w))
    return files


def run_info(w):
    """What a metrics file records about its run, so tables can tell configs apart."""
    init = init_of(w)
    role = "teacher" if init is None else "student"
    return dict(
        pair=w.pair, task=w.task, lang=w.lang, peft=w.peft, seed=int(w.seed), role=role,
        init=None if init is None else init.name,
        teacher=config["pairs"][w.pair]["teacher"], student=config["pairs"][w.pair]["student"],
        training=hyper(role)(w), module=module_config(w),
    )
