"""One spelling of a student init (`transmod.align.inits.Init`), and the config's choices taken from the library's
tables: a new alignment method, mapping or module kind is one entry there, and the config and the inits follow."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from helpers import REPO
from helpers.config import DEMO_CONFIG, SCHEMA, study_config
from helpers.results import run_info

from transmod.align import methods
from transmod.align.inits import (
    DEFAULT,
    LIGHT_BASELINE,
    ZERO_SHOT_BASELINE,
    Init,
    init_pattern,
    parse_run,
    run_name,
    run_pattern,
    transfer_pattern,
)
from transmod.errors import TransmodError
from transmod.modules import kinds
from transmod.results.runs import gather, read_metrics
from transmod.train import tasks
from transmod.workflow.config import load_schema, schema_enums, validate_config

CONFIGS = [REPO / "config.yaml", DEMO_CONFIG, REPO / "profiles" / "minilm" / "minilm-config.yaml"]


def shipped_init_names() -> list[str]:
    """Every init a shipped config names, top level and per pair."""
    names = []
    for path in CONFIGS:
        config = yaml.safe_load(path.read_text())
        names += config.get("inits", [])
        names += [name for spec in config.get("pairs", {}).values() for name in spec.get("inits", [])]
    return names


def test_every_shipped_init_round_trips_and_matches_the_wildcard():
    names = shipped_init_names()
    assert {"default", "skip", "avg", "zs-skip", "zs-avg"} <= set(names)
    for name in names + ["zs-default", "skip-procrustes", "zs-avg-lsa-signed", "avg-select", "skip-linear", "cka",
                         "skip-auto", "zs-avg-auto-heal", "skip-heal", "cka-linear-heal", "avg-lsa-signed-heal",
                         "lt-skip", "lt-default", "lt-avg-linear-heal"]:
        init = Init.parse(name)
        assert init.name == str(init) == name and Init.parse(init.name) == init
        assert re.fullmatch(init_pattern(), name)
        assert bool(re.fullmatch(transfer_pattern(), name)) == (init.transferred and not init.budget)
        assert parse_run(run_name(init)) == init and re.fullmatch(run_pattern(), run_name(init))
    assert parse_run("teacher") is None and run_name(None) == "teacher"


def test_what_an_init_name_encodes():
    assert Init.parse("skip") == Init("skip", "lsa") and Init.parse("avg-procrustes") == Init("avg", "procrustes")
    assert Init.parse("zs-avg-lsa-signed") == Init("avg", "lsa-signed", zero_shot=True)
    assert Init.parse("default") == DEFAULT and not DEFAULT.transferred
    assert Init.parse("zs-default") == ZERO_SHOT_BASELINE == Init(zero_shot=True)
    assert Init.parse("zs-skip-linear").base == Init.parse("skip-linear")  # the module a zero-shot run starts from
    assert Init.parse("skip-auto") == Init("skip", "auto") and Init.parse("skip-auto").auto
    assert Init.parse("zs-avg-lsa-signed-heal") == Init("avg", "lsa-signed", zero_shot=True, heal=True)
    assert Init.parse("cka-heal") == Init("cka", heal=True) and Init.parse("zs-cka-heal").base == Init("cka", heal=True)
    assert Init.parse("copy").copy and Init.parse("zs-copy") == Init("copy", zero_shot=True) and not Init("skip").copy
    light = Init.parse("lt-skip-linear")  # a light fine-tune: the moved module, trained on the `light` budget
    assert light == Init("skip", "linear", light=True) and light.base == Init("skip", "linear") and light.transferred
    assert light.baseline == LIGHT_BASELINE == Init.parse("lt-default") and Init("skip").baseline == DEFAULT
    assert Init.parse("zs-skip").baseline == ZERO_SHOT_BASELINE
    with pytest.raises(TransmodError, match="zero-shot .* or light .*, not both"):
        Init("skip", zero_shot=True, light=True)


def test_copy_takes_no_alignment_method():
    with pytest.raises(TransmodError, match=r"^config key inits.2: init copy-procrustes: copy moves the teacher's "
                                            r"module as it is, with no alignment method"):
        Init.parse("copy-procrustes", "config key inits.2")


@pytest.mark.parametrize("name", ["skip-lsa", "default-linear", "zs-", "zs-zs-skip", "lt-zs-skip", "zs-lt-skip", "lt-",
                                  "ckaa", "Skip", "skip-", "", 3, None,
                                  "default-heal", "skip-heal-auto", "auto", "skip-heal-heal"])
def test_a_bad_init_name_is_one_error_naming_the_key(name):
    with pytest.raises(TransmodError) as info:
        Init.parse(name, "config key inits.1")
    message = str(info.value)
    assert message.startswith(f"config key inits.1: {name!r} is not a student init") and "\n" not in message
    assert "skip, avg" in message and "procrustes" in message  # what to use instead


def test_an_init_value_without_a_name_is_refused():
    for mapping, method in ((None, "linear"), ("half", "lsa"), ("skip", "embedding"), (None, "auto")):
        with pytest.raises(TransmodError, match="no init has mapping"):
            Init(mapping, method)


@pytest.mark.parametrize("change,expected", [
    ({"inits": ["default", "sikp"]}, "config key inits.1: 'sikp' is not a student init"),
    ({"pairs.incompatible.inits": ["default", "zs-skip-lsa"]},
     "config key pairs.incompatible.inits.1: 'zs-skip-lsa' is not a student init"),
    ({"pairs.matching.inits": ["skip"], "inits": ["avg", "default-skip"]},  # the top level, though no pair uses it
     "config key inits.1: 'default-skip' is not a student init"),
    ({"pairs.incompatible.inits": ["default", "copy"]},
     "config key pairs.incompatible.inits: copy moves the teacher's module as it is, and pair incompatible's teacher is "
     "1024 wide, its student 768; drop copy for this pair"),
    ({"pairs.matching.inits": ["skip", "cka", "skip-auto"]},
     "config key pairs.matching.inits: cka, skip-auto align hidden dimensions or pick layers on samples, but pair "
     "matching is not aligned"),
])
def test_the_config_check_refuses_a_bad_init_naming_its_key(change, expected):
    with pytest.raises(TransmodError) as info:
        validate_config(study_config(**change), SCHEMA)
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


def test_every_schema_choice_is_its_library_table():
    schema = load_schema(SCHEMA)
    props, task = schema["properties"], schema["$defs"]["task"]["properties"]
    assert schema["$defs"]["peft"]["items"]["enum"] == list(kinds.KINDS)  # the top-level and each pair's peft
    assert props["alignment"]["properties"]["methods"]["items"]["enum"] == list(methods.grid_methods())
    assert props["alignment"]["properties"]["lora_b"]["enum"] == ["study", "output"]
    assert props["sampling"]["properties"]["split"]["enum"] == list(tasks.SPLITS)
    assert (task["kind"]["enum"], task["metric"]["enum"]) == (list(tasks.TASK_KINDS), list(tasks.METRICS))
    assert "enum: [" not in SCHEMA.read_text()  # no list of the library's is spelled a second time in the schema
    assert set(_tables_named(yaml.safe_load(SCHEMA.read_text()))) == set(schema_enums())


def _tables_named(node) -> list[str]:
    """The `x-enum` table names anywhere in a schema."""
    if isinstance(node, dict):
        own = [node["x-enum"]] if "x-enum" in node else []
        return own + [n for v in node.values() for n in _tables_named(v)]
    return [n for v in node for n in _tables_named(v)] if isinstance(node, list) else []


def test_tables_refuse_a_plan_or_metrics_file_whose_init_is_no_init(tmp_path):
    info = run_info("incompatible", "ner", "en", "adapter", "student-skip", 1)
    path = tmp_path / "runs/incompatible/ner/en/adapter/student-skip/seed1/metrics.json"
    with pytest.raises(TransmodError) as plan_error:
        gather({str(path): {**info, "init": "skip-bogus"}})
    assert f"the plan's run {path}.init: 'skip-bogus' is not a student init" in str(plan_error.value)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"run": {**info, "init": "zs-"}, "score": 0.5, "metric": "f1"}))
    with pytest.raises(TransmodError) as file_error:
        read_metrics(path)
    assert str(file_error.value).startswith(f"{path}: run.init: 'zs-' is not a student init")


@pytest.mark.parametrize("name, expected", [
    ("zs-skip", "only a transferred init"),
    ("lt-skip", "zero-shot and light runs start from their base's"),
    ("skip-heal", "healing reads the two models' sample files"),
    ("skip-auto", "chooses its method by the grid cell's fidelity file"),
    ("skip-procrustes", "no alignment of method 'procrustes'"),
])
def test_a_start_that_cannot_be_written_is_refused_before_anything_is_read(tmp_path, name, expected):
    from transmod.align.starts import transferred_start

    missing = tmp_path / "nothing-here"  # no module, no models: the refusal comes first
    with pytest.raises(TransmodError, match=re.escape(expected)):
        transferred_start(Init.parse(name), missing, str(missing), str(missing), {"lsa": None}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
