"""Validate the workflow's config before any job runs: schema first, then what a schema cannot say.

Every problem becomes one line that names the key, so `snakemake -n` refuses a bad config clearly.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from transmod.align import methods, samplefile, transfer
from transmod.align.inits import STUDY_METHOD, Init
from transmod.align.layermap import SAMPLED_MAPPINGS
from transmod.atomic import MAX_NAME
from transmod.errors import TransmodError, read_json
from transmod.hub import is_hub_id, looks_local, slug
from transmod.modules import kinds
from transmod.results import SHARED_TABLES
from transmod.train import tasks
from transmod.train.tasks import Task, declare_task

# Shapes (layers, hidden size) of the hub models the study uses; local folders are read from their config.json.
KNOWN_SHAPES = {
    "bert-base-multilingual-cased": (12, 768),
    "distilbert-base-multilingual-cased": (6, 768),
    "xlm-roberta-large": (24, 1024),
    "xlm-roberta-base": (12, 768),
}
# Folders that the workflow's own rules build when the config has their section (workflow/rules/<name>.smk).
BUILT_ASSETS = {"demo": "resources/demo/", "minilm": "resources/minilm/", "smollm2": "resources/smollm2/"}
# The key that makes Snakemake evaluate a config file's `?`-values as Python (YTE templating): a config is data.
YTE_KEY = "__use_yte__"
# The longest pair or task name. Each names folders under results/ (and `<pair>.<task>.html` a file), and an
# output is first written to a temporary sibling with a longer name (transmod.atomic): 64 keeps every derived
# file name far below the 255 bytes a file system allows.
# A model's own results folder (results/teachers/<name>, results/samples/<name>: hub.slug of its id or path).
MODEL_MAX_NAME = 200


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            where = f"{self.name}, line {key_node.start_mark.line + 1}"
            if key in seen:
                raise TransmodError(f"{where}: key {key!r} is given twice in one mapping (only the last would count); "
                                    "keep one")
            if key == YTE_KEY:
                raise TransmodError(f"{where}: {YTE_KEY} makes Snakemake run the file's `?` values as Python (YTE "
                                    "templating); a transmod config is plain data: remove the key")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def check_config_files(paths: Iterable[str | Path]) -> None:
    """Each config file parses as YAML without duplicate keys or YTE templating; errors name the file and line."""
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                yaml.load(handle, Loader=_StrictLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise TransmodError(f"{path}{where}: YAML syntax error: {exc.problem or exc.context}; fix the file") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise TransmodError(f"{path}: cannot read the config file ({exc}); fix the file") from None


# The schema's `integer` is an int, never 1.0 (JSON Schema counts 1.0 as an integer; a seed of 1.0 names no run).
_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)),
)


def check_values(value: Any, path: tuple = ()) -> None:
    """Every mapping key is text and every number finite: YAML reads `yes`, `on` or `1` as keys of other types,
    which the schema's name patterns pass over, and `.nan` and `.inf` pass every bound (NaN compares false)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TransmodError(f"config key {_key(path)}: the name {key!r} is read as a {type(key).__name__}, "
                                    "not as text; quote it")
            check_values(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_values(item, (*path, i))
    elif isinstance(value, float) and not math.isfinite(value):
        raise TransmodError(f"config key {_key(path)}: {value} is not a finite number; give a finite value")


def schema_enums() -> dict[str, tuple[str, ...]]:
    """The choices a schema takes from the library's tables (`x-enum: <table>`), read when a config is checked:
    a new module kind, alignment method or metric is one entry in its table, and the config accepts it."""
    return {"module kinds": tuple(kinds.KINDS), "alignment methods": methods.grid_methods(),
            "lora_b alignments": transfer.LORA_B_ALIGNMENTS, "task kinds": tasks.TASK_KINDS,
            "metrics": tuple(tasks.METRICS), "splits": tasks.SPLITS, "sample dtypes": tuple(samplefile.DTYPES)}


def fill_enums(schema: Any) -> Any:
    """The schema with each `x-enum: <table>` given that table's names as its `enum`, and the `x-options`
    section given each module kind's options."""
    if isinstance(schema, list):
        return [fill_enums(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    filled = {key: fill_enums(value) for key, value in schema.items()}
    if "x-enum" in schema:
        filled["enum"] = list(schema_enums()[schema["x-enum"]])
    if schema.get("x-options") == "module kinds":
        filled.update(type="object", additionalProperties=False,
                      properties={name: kind.options.schema() for name, kind in kinds.KINDS.items()})
    return filled


def load_schema(schema_file: str | Path) -> dict:
    return fill_enums(yaml.safe_load(Path(schema_file).read_text()))


def check_schema(config: dict, schema_file: str | Path, prefix: tuple = ()) -> None:
    """The first schema violation, as one line naming the key (`prefix`: where `config` sits in the whole)."""
    schema = load_schema(schema_file)
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    error = errors[0]
    path = [*prefix, *error.absolute_path]
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where = _key(path)
        raise TransmodError(f"config key {where}: unknown key(s) {', '.join(extra)}; allowed: "
                            f"{', '.join(error.schema.get('properties', {}))}")
    raise TransmodError(f"config key {_key(path)}: {error.message}")


def validate_section(config: dict, section: str, schema_file: str | Path) -> None:
    """A profile's own section (`demo`, `minilm`, `smollm2`), against the schema that lives with that profile."""
    check_schema(config[section], schema_file, (section,))


def model_dims(model: str) -> tuple[int, int] | None:
    """(layers, hidden size) of a local model folder or a known hub model; None when unknown offline."""
    config = Path(model) / "config.json"
    if config.is_file():
        data = read_json(config, "restore the model's config.json")
        if not isinstance(data, dict):
            raise TransmodError(f"{config}: not a model config (a JSON object); restore the model's config.json")
        layers = data.get("num_hidden_layers", data.get("n_layers"))
        hidden = data.get("hidden_size", data.get("dim"))
        return (layers, hidden) if isinstance(layers, int) and isinstance(hidden, int) else None
    return KNOWN_SHAPES.get(model)


def model_is_decoder(model: str) -> bool | None:
    """Whether a local model folder holds a decoder LLM (its config's model_type); None when unknown offline."""
    from transmod.modules.architectures import architecture

    config = Path(model) / "config.json"
    if not config.is_file():
        return None
    data = read_json(config, "restore the model's config.json")
    model_type = data.get("model_type") if isinstance(data, dict) else None
    return architecture(model_type, str(config)).decoder if isinstance(model_type, str) else None


def check_decoder_tasks(config: dict, pair: str, tasks: dict[str, Task]) -> None:
    """A decoder pair runs completion and multiple-choice tasks, and sentence (pair) classification by label words,
    with LoRA; an encoder pair classification tasks: the other way round there is nothing to train."""
    spec = config["pairs"][pair]
    decoder = {role: model_is_decoder(spec[role]) for role in ("teacher", "student")}
    if None not in decoder.values() and decoder["teacher"] != decoder["student"]:
        raise TransmodError(f"config key pairs.{pair}.student: {spec['student']} is "
                            f"{'a decoder LLM' if decoder['student'] else 'an encoder'} and the teacher "
                            f"{spec['teacher']} {'a decoder LLM' if decoder['teacher'] else 'an encoder'}; no module "
                            "moves between the two kinds: pick two decoders or two encoders")
    for name in spec["tasks"]:
        task = tasks[name]
        for role, is_decoder in decoder.items():
            wrong = task.is_token if is_decoder else is_decoder is False and task.is_decoder
            if wrong:
                raise TransmodError(
                    f"config key pairs.{pair}.tasks: task {name} is a {task.kind} task, and the {role} {spec[role]} is "
                    + ("a decoder LLM; decoder LLMs run completion, multiple-choice and sentence classification tasks"
                       if is_decoder else "an encoder; encoders run classification tasks"))
        key, pefts = pefts_of(config, pair)
        if (task.is_decoder or any(decoder.values())) and set(pefts) != {"lora"}:
            raise TransmodError(f"config key {key}: the {task.kind} task {name} of pair {pair} trains a LoRA on a decoder "
                                f"LLM, and {key} also lists {', '.join(p for p in pefts if p != 'lora')}; give the pair "
                                f"its own `peft: [lora]` (pairs.{pair}.peft)")


def check_fit_tokens(config: dict, pair: str) -> None:
    """Every cell's fidelity job fits a dense reference map on the sampled tokens before the held-out ones: refuse,
    before any job runs, a `sampling.max_tokens` that cannot give more of them than the widest space the map
    fits (a decoder's MLP). Known where both models are local folders."""
    from transmod.align.alignment import widest_map
    from transmod.align.pairing import split_point
    from transmod.modules.architectures import load_model_shape

    spec = config["pairs"][pair]
    if not all((Path(spec[role]) / "config.json").is_file() for role in ("teacher", "student")):
        return
    teacher, student = (load_model_shape(spec[role]) for role in ("teacher", "student"))
    sampled, holdout = config["sampling"]["max_tokens"], config["alignment"]["holdout"]
    fit = split_point(sampled, holdout)
    for peft in pefts_of(config, pair)[1]:
        d_t, d_s = widest_map(teacher.describe(), student.describe(), kinds.get_kind(peft).spaces(True, teacher.arch))
        need = max(d_t, d_s) + 1
        if fit < need:
            enough = next(n for n in itertools.count(need) if split_point(n, holdout) >= need)
            raise TransmodError(
                f"config key sampling.max_tokens: the fidelity jobs of pair {pair} fit a {d_t} x {d_s} map per layer "
                f"({peft}) on the sampled tokens before the held-out {holdout:.0%}: {fit} of {sampled}, and need at "
                f"least {need}; raise sampling.max_tokens to {enough} or more")


def pair_is_decoder(config: dict, pair: str, tasks: dict[str, Task]) -> bool:
    """Whether a pair's models are decoder LLMs: by a local model's config, else by its decoder tasks."""
    spec = config["pairs"][pair]
    known = model_is_decoder(spec["teacher"])
    return known if known is not None else any(tasks[name].is_decoder for name in spec["tasks"])


def check_names(config: dict) -> None:
    """Pair and task names name folders under results/: the schema's patterns keep each one plain path
    component, and MAX_NAME keeps every path derived from it valid."""
    for section in ("pairs", "tasks"):
        for name in config[section]:
            if len(name) > MAX_NAME:
                raise TransmodError(f"config key {section}: the name {name[:24]}... has {len(name)} characters; it "
                                    f"names folders under results/: use at most {MAX_NAME}")
    for name in config["tasks"]:
        if name in SHARED_TABLES:
            raise TransmodError(f"config key tasks.{name}: results/tables/{name}.md is the table of every task; "
                                "rename the task")


def _built(path: str, built: list[str]) -> bool:
    """A path under a folder that the workflow's own rules build (and that `..` does not climb out of)."""
    return path.startswith(tuple(built)) and ".." not in Path(path).parts


def _check_local(key: str, path: str, built: list[str], marker: str | None = None) -> None:
    """A local path the config names must exist before any job (holding `marker`, if given), unless the
    workflow's rules build it; any other name must be a hub id."""
    folder = Path(path).expanduser()
    if _built(path, built) and not folder.exists():
        return
    if not looks_local(path):
        if not is_hub_id(path):
            raise TransmodError(f"config key {key}: {path!r} is neither a local folder nor a hub id (name or "
                                "owner/name, of letters, digits, -, _ and .); fix the name")
    elif not folder.exists():
        raise TransmodError(f"config key {key}: no such local folder {path!r}; give an existing folder or a hub id "
                            "(owner/name)")
    elif marker and not (folder / marker).is_file():
        raise TransmodError(f"config key {key}: {path!r} is not a model folder (it holds no {marker}); give a "
                            "model folder or a hub id (owner/name)")


def check_models(config: dict, built: list[str]) -> None:
    """Each model is a model folder or a hub id, with a results folder of its own: teacher runs and samples
    are keyed by hub.slug of the name, so two models with one folder name would share them."""
    folders: dict[str, tuple[str, str]] = {}
    for pair, spec in config["pairs"].items():
        for role in ("teacher", "student"):
            key, name = f"pairs.{pair}.{role}", spec[role]
            _check_local(key, name, built, marker="config.json")
            folder = slug(name)
            if folder in ("", ".", "..") or len(folder.encode()) > MODEL_MAX_NAME:
                raise TransmodError(f"config key {key}: {name!r} would name its results folder {folder[:24]!r}, not "
                                    f"one folder name of at most {MODEL_MAX_NAME} bytes; give the model by a shorter "
                                    "path (a link to it)")
            first_key, first = folders.setdefault(folder, (key, name))
            if os.path.normpath(first) != os.path.normpath(name):
                raise TransmodError(f"config key {key}: {name!r} and {first!r} ({first_key}) are different models "
                                    f"whose results would share one folder (results/teachers/{folder}); rename or "
                                    "move one of them")


def declared_tasks(config: dict) -> dict[str, Task]:
    """Every task of the config as a `Task` (built-in declarations as defaults); errors name the key."""
    try:
        return {name: declare_task(name, spec) for name, spec in config["tasks"].items()}
    except TransmodError as exc:
        raise TransmodError(f"config key {exc}") from None


def check_tasks(config: dict, built: list[str], read_data: bool) -> None:
    """Declarations, then the data: a local folder is read (columns, labels) when `read_data`, so a
    declaration that does not fit it stops the workflow before any job; the jobs that load a hub
    dataset check it the same way."""
    from transmod.train.data import check_dataset

    for name, task in declared_tasks(config).items():
        spec = config["tasks"][name]
        dataset, languages = spec["dataset"], spec["languages"]
        _check_local(task.key("dataset"), dataset, built)
        if dataset == task.hub_id:
            missing = [lang for lang in languages if lang not in task.languages]
            if missing:
                raise TransmodError(f"config key {task.key('languages')}: {', '.join(missing)} not in {dataset}; "
                                    f"it has {', '.join(task.languages)}")
        elif read_data and looks_local(dataset) and Path(dataset).expanduser().is_dir():
            check_dataset(dataset, task, languages)


def check_semantics(config: dict, read_data: bool = True) -> None:
    built = [prefix for section, prefix in BUILT_ASSETS.items() if section in config]
    check_tasks(config, built, read_data)
    check_models(config, built)
    used = {peft for pair in config["pairs"] for peft in pefts_of(config, pair)[1]}
    options = {peft: kinds.get_kind(peft).options.from_dict(config.get("modules", {}).get(peft, {}), f"config key modules.{peft}")
               for peft in sorted(used)}
    tasks = declared_tasks(config)
    for pair, spec in config["pairs"].items():
        for task in spec["tasks"]:
            if task not in config["tasks"]:
                raise TransmodError(f"config key pairs.{pair}.tasks: task {task!r} has no entry under `tasks`; add one")
        check_decoder_tasks(config, pair, tasks)
        check_fit_tokens(config, pair)
        teacher, student = model_dims(spec["teacher"]), model_dims(spec["student"])
        if teacher and student and student[0] > teacher[0]:
            raise TransmodError(
                f"config key pairs.{pair}.student: {spec['student']} ({student[0]} layers) is deeper than the teacher "
                f"{spec['teacher']} ({teacher[0]} layers); the student must be the shallower model"
            )
        if teacher and student and teacher[1] != student[1] and not spec["aligned"]:
            raise TransmodError(
                f"config key pairs.{pair}.aligned: the teacher is {teacher[1]} wide and the student {student[1]}; "
                "a module moves between different widths only with `aligned: true`"
            )
        init_key, copies = inits_of(config, pair)
        if teacher and student and teacher[1] != student[1] and any(init.copy for init in copies):
            raise TransmodError(
                f"config key {init_key}: copy moves the teacher's module as it is, and pair {pair}'s teacher is "
                f"{teacher[1]} wide, its student {student[1]}; drop copy for this pair (skip or avg align the widths)"
            )
        pair_options = {peft: options[peft] for peft in pefts_of(config, pair)[1]}
        for (role, dims), (peft, opts) in itertools.product((("teacher", teacher), ("student", student)),
                                                            pair_options.items()):
            key = dims and opts.too_wide(dims[1])
            if key:
                raise TransmodError(
                    f"config key modules.{peft}.{key}: {getattr(opts, key)} is wider than the {role} of pair {pair} "
                    f"({spec[role]}, hidden size {dims[1]}); it must be at most the hidden size"
                )


def pefts_of(config: dict, pair: str) -> tuple[str, list[str]]:
    """A pair's module kinds (its own `peft`, else the top-level ones), and their key."""
    own = "peft" in config["pairs"][pair]
    return (f"pairs.{pair}.peft", config["pairs"][pair]["peft"]) if own else ("peft", config["peft"])


def inits_of(config: dict, pair: str | None = None) -> tuple[str, list[Init]]:
    """A pair's student inits (its own `inits`, else the top-level ones; no pair: those), and their key."""
    own = pair is not None and "inits" in config["pairs"][pair]
    key = f"pairs.{pair}.inits" if own else "inits"
    names = config["pairs"][pair]["inits"] if own else config["inits"]
    return key, [Init.parse(name, f"config key {key}.{i}") for i, name in enumerate(names)]


def check_inits(config: dict) -> None:
    """Every init name parses (the top-level ones too where each pair has its own); inits with another alignment
    method than the study's, or a layer map chosen on samples (whose choice an alignment records), only on aligned
    pairs."""
    inits_of(config)
    for pair, spec in config["pairs"].items():
        key, inits = inits_of(config, pair)
        aligning = [init.name for init in inits if init.method != STUDY_METHOD or init.mapping in SAMPLED_MAPPINGS]
        if aligning and not spec["aligned"]:
            raise TransmodError(
                f"config key {key}: {', '.join(aligning)} align hidden dimensions or pick layers on samples, but pair "
                f"{pair} is not aligned "
                f"(`aligned: false`); " + ("drop them" if key != "inits" else f"give pair {pair} its own `inits` without them")
            )


def validate_config(config: dict, schema_file: str | Path, config_files: Iterable[str | Path] = (),
                    read_data: bool = True) -> None:
    """All checks; `read_data=False` in a job's own process, where the data was checked at the start."""
    check_config_files(config_files)
    check_values(config)
    check_schema(config, schema_file)
    check_names(config)
    check_inits(config)
    check_semantics(config, read_data)


def as_workflow_error(check: Callable[..., None], *args: Any) -> None:
    """Run a check in the Snakefile: a TransmodError stops Snakemake with one line, before any job."""
    from snakemake.exceptions import WorkflowError

    try:
        check(*args)
    except TransmodError as exc:
        raise WorkflowError(f"invalid config: {exc}") from None
