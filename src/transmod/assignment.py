"""Which teacher dimension each student dimension takes, per mapped layer (linear sum assignment)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from transmod.architectures import ModelShape
from transmod.atomic import MARK
from transmod.correlation import Correlation
from transmod.errors import TransmodError


def check_fitted(fitted, teacher: ModelShape, student: ModelShape, mapping: str, source: str) -> None:
    """Refuse an assignment or alignment computed for other model shapes or another layer mapping.

    `fitted` has `teacher`/`student` dicts (num_layers, hidden_size) and a `mapping`.
    """
    for who, shape in (("teacher", teacher), ("student", student)):
        want = (getattr(fitted, who)["num_layers"], getattr(fitted, who)["hidden_size"])
        if want != (shape.num_layers, shape.hidden_size):
            raise TransmodError(
                f"{source}: computed for a {who} of {want[0]} layers x {want[1]} dims, but {shape.name} has "
                f"{shape.num_layers} x {shape.hidden_size}; recompute it from samples of {shape.name}"
            )
    if fitted.mapping != mapping:
        raise TransmodError(f"{source}: computed for --mapping {fitted.mapping}, not {mapping}; use the same mapping")


def assign(r: np.ndarray) -> tuple[np.ndarray, float]:
    """Maximise the summed signed correlation: sigma[i] is the teacher dim of student dim i."""
    if r.ndim != 2 or r.shape[0] > r.shape[1]:
        raise TransmodError(
            f"a correlation of shape {r.shape} cannot be assigned: the student must not be wider than the teacher"
        )
    rows, cols = linear_sum_assignment(-r)
    sigma = np.empty(r.shape[0], dtype=np.int64)
    sigma[rows] = cols
    return sigma, float(r[rows, cols].mean())


@dataclass
class LayerAssignment:
    student_layer: int
    teacher_layers: list[int]
    space: str
    sigma: list[int]
    mean_r: float


@dataclass
class Assignment:
    mapping: str
    teacher: dict
    student: dict
    num_tokens: int
    layers: list[LayerAssignment] = field(default_factory=list)

    def sigma(self, student_layer: int, space: str = "h") -> np.ndarray | None:
        for la in self.layers:
            if la.student_layer == student_layer and la.space == space:
                return np.asarray(la.sigma, dtype=np.int64)
        return None

    def check_models(self, teacher: ModelShape, student: ModelShape, mapping: str, source: str) -> None:
        check_fitted(self, teacher, student, mapping, source)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({MARK: "assignment", **asdict(self)}, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "Assignment":
        path = Path(path)
        if not path.is_file():
            raise TransmodError(f"{path}: no such assignment file; run `transmod assign` first")
        try:
            data = json.loads(path.read_text())
            data.pop(MARK, None)
            layers = [LayerAssignment(**la) for la in data.pop("layers")]
            return cls(**data, layers=layers)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise TransmodError(f"{path}: not a transmod assignment file ({exc}); write it with `transmod assign`") from None


def assign_correlation(corr: Correlation) -> Assignment:
    out = Assignment(corr.mapping, corr.teacher, corr.student, corr.num_tokens)
    for lc in corr.layers:
        sigma, mean_r = assign(lc.r)
        out.layers.append(LayerAssignment(lc.student_layer, lc.teacher_layers, lc.space, sigma.tolist(), mean_r))
    return out
