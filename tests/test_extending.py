"""ARCHITECTURE.md's "Where to add" holds: a module kind and an alignment method are each one entry in one table,
and every place that offers a choice (the config's schema and checks, the training options, the CLI, the inits,
the fits) accepts the new entry without another edit."""

import argparse
import copy
from dataclasses import dataclass

import numpy as np
import pytest
from helpers.config import SCHEMA, study_config
from helpers.models import add_module, encoder_samples, make_model

from transmod import cli
from transmod.align import layermap, methods
from transmod.align.alignment import fit_alignment
from transmod.align.inits import Init
from transmod.errors import TransmodError
from transmod.modules import kinds
from transmod.modules.adapter import BottleneckAdapter
from transmod.modules.kind import Options, option
from transmod.train.config import TrainConfig
from transmod.workflow.config import validate_config


@dataclass(frozen=True)
class GateOptions(Options):
    width: int = option(4, "count", "the gate's width", width=True)
    temperature: float = option(1.0, "positive", "the gate's softmax temperature")


class Gate(BottleneckAdapter):
    """A third kind, for the test only: an adapter's layout under its own name and options."""

    name = "gate"
    label = "gate"
    options = GateOptions


@pytest.fixture
def gate(monkeypatch):
    monkeypatch.setitem(kinds.KINDS, "gate", Gate())


def _sample_args(peft: str) -> argparse.Namespace:
    return cli._parser().parse_args(["sample", "--model", "m", "--peft", peft, "--data", "d.txt", "--out", "o.parquet"])


def test_a_kind_that_is_not_registered_is_refused_everywhere():
    with pytest.raises(TransmodError, match="config key peft.1: 'gate' is not one of"):
        validate_config(study_config(peft=["adapter", "gate"]), SCHEMA)
    with pytest.raises(TransmodError, match="unknown peft 'gate'"):
        TrainConfig.from_dict({"modules": {"gate": {}}})
    with pytest.raises(SystemExit):
        _sample_args("gate")


def test_a_kind_added_to_the_table_is_accepted_by_the_config_the_training_options_and_the_cli(gate):
    validate_config(study_config(peft=["adapter", "gate"], **{"modules.gate": {"width": 2, "temperature": 0.5}}), SCHEMA)
    for bad, said in (({"width": 0}, "config key modules.gate.width: 0 is less than the minimum of 1"),
                      ({"depth": 2}, "config key modules.gate: unknown key.s. depth; allowed: width, temperature"),
                      ({"width": 900}, "config key modules.gate.width: 900 is wider than the teacher")):
        with pytest.raises(TransmodError, match=said):
            validate_config(study_config(peft=["gate"], **{"modules.gate": bad}), SCHEMA)
    cfg = TrainConfig.from_dict({"modules": {"gate": {"width": 3}}})
    assert cfg.module_options("gate") == GateOptions(width=3, temperature=1.0)
    with pytest.raises(TransmodError, match="modules.gate: temperature is -1, but it must be a finite number above 0"):
        TrainConfig.from_dict({"modules": {"gate": {"temperature": -1}}})
    assert _sample_args("gate").peft == "gate"


def fit_first_dims(acc, ridge: float, intercept: bool, lm):
    """The toy method: student dim i reads teacher dim i, whatever the samples say."""
    lm.sigma = np.arange(acc.result()[0].shape[0])
    lm.mean_r = 0.0
    return lm


@pytest.fixture
def first(monkeypatch):
    monkeypatch.setitem(methods.METHODS, "first", methods.Method("first", f"{__name__}:fit_first_dims"))


def test_a_method_added_to_the_table_is_offered_parsed_and_fitted(first, tmp_path, capsys):
    validate_config(study_config(**{"alignment.methods": ["lsa", "first"], "pairs.incompatible.inits": ["zs-avg-first"]}),
                    SCHEMA)
    assert Init.parse("zs-avg-first") == Init("avg", "first", zero_shot=True)
    with pytest.raises(SystemExit):
        cli.main(["fit-alignment", "--help"])
    assert "first" in capsys.readouterr().out
    base = make_model("bert", 2)
    student = make_model("bert", 1, hidden=16, seed=3)
    add_module(copy.deepcopy(base), "adapter")
    alignment = fit_alignment(*encoder_samples((base, student), tmp_path, "adapter"), "skip", "first")
    assert alignment.method == "first" and all(lm.sigma.tolist() == list(range(16)) for lm in alignment.layers)


def test_a_method_or_mapping_not_in_the_tables_is_refused_by_the_config_and_the_inits(monkeypatch):
    config = study_config(**{"alignment.methods": ["lsa", "sparse"], "pairs.incompatible.inits": ["default", "zs-half-sparse"]})
    with pytest.raises(TransmodError, match="config key alignment.methods.1: 'sparse' is not one of"):
        validate_config(config, SCHEMA)
    monkeypatch.setitem(methods.METHODS, "sparse", methods.Method("sparse", f"{__name__}:fit_first_dims"))
    with pytest.raises(TransmodError, match="config key pairs.incompatible.inits.1: 'zs-half-sparse' is not a student"):
        validate_config(config, SCHEMA)
    monkeypatch.setitem(layermap.MAPPINGS, "half", lambda teacher, student: layermap.skip_map(teacher, student))
    validate_config(config, SCHEMA)
    assert Init.parse("zs-half-sparse") == Init("half", "sparse", zero_shot=True)
