"""How a student run starts, as one value: `Init`. Its name is how the config, the workflow's paths and
wildcards, the metrics files and the tables spell it: `default` (a fresh module), a layer mapping (`skip`,
`avg`, or `cka`: the teacher layers most similar on samples, for aligned pairs; transferred and aligned with the
study's `lsa`), `copy` (the teacher's module as it is, on the student's first layers: never aligned, for pairs
of the same widths), a mapping and another alignment method
(`avg-procrustes`) or `auto` (the method of best fidelity, `transmod.align.fidelity.choose_method`), each also
healed on unlabelled text before training (`skip-heal`, `transmod.align.healing`), zero-shot (`zs-skip`:
the transferred module frozen, only the head trained) and light (`lt-skip`: LoRASuite's light fine-tune, trained
from the moved module on the short `light` budget).
Zero-shot and light runs each have their baseline, the default start under the same budget (`zs-default`,
`lt-default`: `Init.baseline`).

Names are parsed and built here only (`Init.parse`, `Init.name`); the grammar follows the library's tables
(`mapping_names`, `grid_methods`), so a new mapping or method is a new init without another edit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from transmod.align import layermap, methods
from transmod.errors import TransmodError

DEFAULT_NAME = "default"
ZERO_SHOT = "zs-"  # prefix of zero-shot runs
LIGHT = "lt-"  # prefix of light fine-tune runs (the `light` training budget)
STUDY_METHOD = "lsa"  # what a bare mapping aligns with
AUTO = "auto"  # the method whose moved module has the best fidelity on held-out tokens (never a test score)
HEAL = "-heal"  # suffix: the moved module healed on unlabelled text before training (transmod.align.healing)
TEACHER_RUN = "teacher"  # run folder names: `teacher`, or `student-<init>`
STUDENT_PREFIX = "student-"


def _alternatives(names: Iterable[str]) -> str:
    return "|".join(re.escape(name) for name in names)


def _other_methods() -> list[str]:
    """The methods an init names (a bare mapping aligns with the study's); the table is read now, not at import."""
    return [m for m in methods.grid_methods() if m != STUDY_METHOD]


def transfer_pattern() -> str:
    """A transferred init (zero-shot left out) as a regular expression: a wildcard constraint, groups unnamed."""
    methods_or_auto = _alternatives([*_other_methods(), AUTO])
    return rf"({_alternatives(layermap.mapping_names())})(-({methods_or_auto}))?({re.escape(HEAL)})?"


def init_pattern() -> str:
    """Every init name as a regular expression (wildcard constraints; the tables it reads are read now)."""
    return rf"({re.escape(ZERO_SHOT)}|{re.escape(LIGHT)})?({re.escape(DEFAULT_NAME)}|{transfer_pattern()})"


@dataclass(frozen=True)
class Init:
    """A student run's start: a fresh module (`mapping` None) or the teacher's module moved with a layer
    mapping and aligned with `method` (`auto`: the method of best fidelity, chosen per grid cell and seed);
    `heal` trains the moved module on unlabelled text first; `zero_shot` freezes it and trains the head only;
    `light` trains it on the short `light` budget."""

    mapping: str | None = None
    method: str = STUDY_METHOD
    zero_shot: bool = False
    heal: bool = False
    light: bool = False

    def __post_init__(self) -> None:
        fresh = self.mapping is None and self.method == STUDY_METHOD and not self.heal  # `default`
        known = self.mapping in layermap.mapping_names() and self.method in (*methods.grid_methods(), AUTO)
        if not fresh and not known:
            raise TransmodError(f"no init has mapping {self.mapping!r} and method {self.method!r}")
        if self.zero_shot and self.light:
            raise TransmodError("an init is zero-shot (nothing of the module trained) or light (trained briefly), "
                                "not both")
        if self.copy and self.method != STUDY_METHOD:
            raise TransmodError(f"init {self.mapping}-{self.method}: {layermap.COPY} moves the teacher's module as "
                                "it is, with no alignment method; use copy, or skip/avg with a method")

    @classmethod
    def parse(cls, name: object, key: str = "init") -> Init:
        """The init a name spells; one TransmodError naming `key` (where the name was read) otherwise."""
        match = re.fullmatch(init_pattern(), name) if isinstance(name, str) else None
        if match is None:
            raise TransmodError(
                f"{key}: {name!r} is not a student init; use {DEFAULT_NAME}, a layer mapping "
                f"({', '.join(layermap.mapping_names())}), or <mapping>-<method> (methods: {', '.join(_other_methods())}, "
                f"or {AUTO}: chosen by fidelity), each optionally followed by {HEAL} (healed on unlabelled text) "
                f"and prefixed with {ZERO_SHOT} (zero-shot) or {LIGHT} (light fine-tune)")
        budget, _, mapping, _, method, heal = match.groups()
        try:
            return cls(mapping, method or STUDY_METHOD, budget == ZERO_SHOT, heal is not None, budget == LIGHT)
        except TransmodError as exc:
            raise TransmodError(f"{key}: {exc}") from None

    @property
    def name(self) -> str:
        """The init's one spelling (the study's method goes unnamed): `skip`, `zs-avg-linear`, `default`."""
        start = DEFAULT_NAME if self.mapping is None else (
            self.mapping if self.method == STUDY_METHOD else f"{self.mapping}-{self.method}")
        return f"{self.budget}{start}{HEAL if self.heal else ''}"

    def __str__(self) -> str:
        return self.name

    @property
    def transferred(self) -> bool:
        """Whether the run starts from the teacher's moved module (not from a fresh one)."""
        return self.mapping is not None

    @property
    def copy(self) -> bool:
        """Whether the start is the teacher's module as it is (no alignment, whatever the pair's `aligned`)."""
        return self.mapping == layermap.COPY

    @property
    def auto(self) -> bool:
        return self.method == AUTO

    @property
    def budget(self) -> str:
        """The run's training budget as its name's prefix: '' (the student's), `zs-` or `lt-`."""
        return ZERO_SHOT if self.zero_shot else LIGHT if self.light else ""

    @property
    def base(self) -> Init:
        """The same start trained as usual: a zero-shot or light run starts from the module its base moved."""
        return replace(self, zero_shot=False, light=False)

    @property
    def baseline(self) -> Init:
        """What the run is compared with: the default start under the same budget."""
        return Init(zero_shot=self.zero_shot, light=self.light)


DEFAULT = Init()
ZERO_SHOT_BASELINE = Init(zero_shot=True)  # a fresh module, head only: what zero-shot transfer is compared with
LIGHT_BASELINE = Init(light=True)  # a fresh module on the light budget: what a light fine-tune is compared with


def run_name(init: Init | None) -> str:
    """A run's folder name under a grid cell: `teacher` (no init), or `student-<init>`."""
    return TEACHER_RUN if init is None else f"{STUDENT_PREFIX}{init.name}"


def run_pattern() -> str:
    """Every run folder name as a regular expression (a wildcard constraint)."""
    return rf"{re.escape(TEACHER_RUN)}|{re.escape(STUDENT_PREFIX)}{init_pattern()}"


def parse_run(run: str, key: str = "run") -> Init | None:
    """The inverse of run_name: None for `teacher`, the student's `Init` for `student-<init>`."""
    if run == TEACHER_RUN:
        return None
    if not run.startswith(STUDENT_PREFIX):
        raise TransmodError(f"{key}: {run!r} is not a run name ({TEACHER_RUN} or {STUDENT_PREFIX}<init>)")
    return Init.parse(run.removeprefix(STUDENT_PREFIX), key)
