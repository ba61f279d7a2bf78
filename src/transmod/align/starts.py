"""The transferred start of one student run, as its init names it: the teacher's module moved with the init's
mapping and method (`auto`: the method of best fidelity in the grid cell's fidelity file), then healed on the
sample files' unlabelled fit tokens where the init says `-heal`. The workflow's prune_align job writes it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from transmod.align.alignment import Alignment
from transmod.align.fidelity import CHOICE_MEASURE, choose_method
from transmod.align.healing import heal
from transmod.align.inits import Init
from transmod.align.samplefile import SampleFile
from transmod.align.transfer import transfer_module
from transmod.errors import TransmodError, read_json
from transmod.modules.architectures import load_model_shape
from transmod.modules.module import Module


def transferred_start(
    init: Init, module_dir: str | Path, teacher: str, student: str, alignments: Mapping[str, str | Path | None],
    out: str | Path, *, lora_b: str = "study", fidelity: str | Path | None = None,
    samples: tuple[str | Path, str | Path] | None = None, holdout: float = 0.2, healing: Mapping | None = None,
) -> str:
    """Write `init`'s transferred module to `out` (a folder Snakemake owns); returns the method used.

    `alignments`: the alignment file of each method the init may use (None: an unaligned pair keeps the
    dimensions); `fidelity`: the cell's fidelity file, read for `auto`; `samples` (teacher's, student's) and
    `healing` (steps, learning_rate, max_tokens) for a `-heal` init."""
    if not init.transferred or init.budget:
        raise TransmodError(f"init {init.name!r}: only a transferred init (skip, avg-linear, ...) has a start to write; "
                            "zero-shot and light runs start from their base's")
    if init.heal and samples is None:  # refused before anything is moved
        raise TransmodError(f"init {init.name}: healing reads the two models' sample files; give them")
    method = choose_method(_measured(fidelity), init.mapping, fidelity) if init.auto else init.method
    if method not in alignments:
        raise TransmodError(f"init {init.name}: no alignment of method {method!r} was given (given: "
                            f"{', '.join(alignments)}); add the method to alignment.methods")
    file = alignments[method]
    alignment = None if file is None else Alignment.load(file)

    def finish(module: Module, moved: Module) -> Module:
        if init.auto:  # the written module says how its method was chosen
            moved.config["transmod"]["chosen_by"] = f"fidelity {CHOICE_MEASURE} ({Path(fidelity).name})"
        if not init.heal:
            return moved
        pair = SampleFile.open(samples[0]), SampleFile.open(samples[1])
        return heal(module, moved, *pair, init.mapping, alignment, lora_b=lora_b, holdout=holdout, **(healing or {}))[0]

    transfer_module(module_dir, load_model_shape(teacher), load_model_shape(student), init.mapping, out,
                    alignment=alignment, lora_b=lora_b, overwrite=True, then=finish)
    return method


def _measured(fidelity: str | Path | None) -> dict:
    """The inits a grid cell's fidelity file measured (`fidelity_of_inits`, under `inits`)."""
    if fidelity is None:
        raise TransmodError("an auto init chooses its method by the grid cell's fidelity file; give it")
    data = read_json(fidelity, "run the fidelity job again")
    if not isinstance(data, dict) or not isinstance(data.get("inits"), dict):
        raise TransmodError(f"{fidelity}: not a fidelity file of the workflow (no `inits` mapping); run the fidelity "
                            "job again")
    return data["inits"]
