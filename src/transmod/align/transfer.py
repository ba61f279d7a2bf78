"""Prune & align: turn a teacher's module into a student-shaped one (layer mapping + alignment).

Works on the format-free `Module` (`transmod.modules`): SKIP/AVG layer maps, then each hidden-space
axis of each weight (its kind's `hidden_axes`) is permuted, pruned or mapped by an alignment
(`transmod.align.alignment`). The folded module is an ordinary module of the student's shape.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from transmod.align.layermap import SAMPLED_MAPPINGS, layer_map, pooled_groups
from transmod.align.methods import dense
from transmod.atomic import check_output
from transmod.errors import TransmodError
from transmod.modules.architectures import ModelShape, module_depths
from transmod.modules.io import check_format, check_writable, read_module, write_module
from transmod.modules.kind import ModuleKind
from transmod.modules.module import MODULE_KIND, Module

if TYPE_CHECKING:  # alignment pulls in the sample reader; transfer itself stays light
    from transmod.align.alignment import Alignment, LayerMap

LORA_B_ALIGNMENTS = ("study", "output")


def transfer_weights(
    module: Module,
    teacher: ModelShape,
    student: ModelShape,
    mapping: str,
    alignment: Alignment | None = None,
    lora_b: str = "study",
) -> dict[tuple[int, str, str], np.ndarray]:
    """Map layers (SKIP copies, AVG averages a group), then fold the alignment into every hidden-size axis.

    A layer that serves the whole depth (ALBERT) holds one module: as a teacher, its module is every depth's;
    as a student, its module takes the mean of the teacher modules at the depths it maps to.

    With no alignment the widths must agree and the map is the identity. The study's permutation
    (`lsa`) is an alignment whose maps are selections: folding it permutes and prunes, bit for bit. A LoRA
    under a dense map (`linear`, `procrustes`) is instead the mean of the group's folded updates refactorised
    to rank r (`refactorise`): averaging A and B apart is not the average of the updates.
    """
    if lora_b not in LORA_B_ALIGNMENTS:
        raise TransmodError(f"unknown --lora-b {lora_b!r}: use one of {', '.join(LORA_B_ALIGNMENTS)}")
    if mapping in SAMPLED_MAPPINGS and alignment is not None:  # chosen on samples: the alignment records it
        depths = alignment.groups()
    else:
        depths = pooled_groups(layer_map(mapping, teacher.num_layers, student.num_layers),
                               module_depths(student.describe()))
    # Teacher depths -> the teacher layers whose modules act there (ALBERT: its one layer at every depth).
    groups = [sorted({teacher.module_layer(t) for t in group}) for group in depths]
    if alignment is None and _sizes(teacher) != _sizes(student):
        raise TransmodError(
            f"{teacher.name} ({_sizes(teacher)}) and {student.name} ({_sizes(student)}) differ in "
            "width: give --samples (to align on the way) or --alignment"
        )
    kind = module.spec
    factored = alignment is not None and dense(alignment.method) and kind.product is not None
    params = sorted({(site, param) for _, site, param in module.weights})
    out: dict[tuple[int, str, str], np.ndarray] = {}
    for l, group in enumerate(groups):
        present = [t for t in group if t in module.layers]
        for site, param in params:
            tensors = [module.weights[(t, site, param)] for t in present if (t, site, param) in module.weights]
            if tensors:
                out[(l, site, param)] = np.ascontiguousarray(
                    _stack(tensors, kind, param) if factored else _mean(tensors))
    if alignment is None:
        return out
    folded = _fold(out, kind, alignment, lora_b)
    if not factored:
        return folded
    rank, _ = kind.inner_size(module.config["config"], teacher.hidden_size)
    return refactorise(folded, kind, rank, next(iter(module.weights.values())).dtype)


def _mean(tensors: list[np.ndarray]) -> np.ndarray:
    """The study's AVG: the element-wise mean of the group's weights (a copy of a group of one)."""
    return tensors[0].copy() if len(tensors) == 1 else np.mean(tensors, axis=0, dtype=np.float64).astype(tensors[0].dtype)


def _stack(tensors: list[np.ndarray], kind: ModuleKind, param: str) -> np.ndarray:
    """A group's factors side by side along the rank, the writers' over k: their product is the mean of the group's
    updates, mean_i B_i A_i (rank up to k r, refactorised after folding); in float64."""
    stacked = np.concatenate([np.asarray(t, np.float64) for t in tensors], axis=kind.inner_axes[param])
    return stacked / len(tensors) if param == kind.product[0] else stacked


def refactorise(weights: dict[tuple[int, str, str], np.ndarray], kind: ModuleKind, rank: int,
                dtype: np.dtype) -> dict[tuple[int, str, str], np.ndarray]:
    """Each (writer, reader) pair of a linear kind replaced by `low_rank` of its product, in `dtype`."""
    writer, reader = kind.product
    out = dict(weights)
    for l, site, param in weights:
        if param == reader:
            b, a = low_rank(weights[(l, site, writer)], weights[(l, site, reader)], rank)
            out[(l, site, writer)], out[(l, site, reader)] = (np.ascontiguousarray(w, dtype) for w in (b, a))
    return out


def low_rank(b: np.ndarray, a: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """B' (d_out x rank) and A' (rank x d_in) whose product is the best rank-`rank` approximation of `b @ a`
    (Eckart-Young: its truncated SVD U S V^T), balanced as B' = U sqrt(S), A' = sqrt(S) V^T, so the kind's scaling
    (alpha / r) still applies. A direction the product lacks (it has rank below `rank`) keeps a row of A' at the
    rms row norm of `a`, with B' zero there: the product is unchanged and the direction still trains."""
    qb, rb = np.linalg.qr(np.asarray(b, np.float64))  # b @ a = qb (rb ra^T) qa^T, via the small core
    qa, ra = np.linalg.qr(np.asarray(a, np.float64).T)
    u, s, vt = np.linalg.svd(rb @ ra.T, full_matrices=False)
    u, v = qb @ u, qa @ vt.T
    idx = np.arange(rank) % len(s)  # a rank above the spaces' widths repeats directions, as null ones
    s = np.where(np.arange(rank) < len(s), s[idx], 0.0)
    null = s <= s.max(initial=0.0) * max(*b.shape, a.shape[1]) * np.finfo(np.float64).eps
    root = np.sqrt(np.where(null, 0.0, s))
    scale = np.sqrt((np.asarray(a, np.float64) ** 2).sum() / a.shape[0])
    return u[:, idx] * root, np.where(null, scale, root)[:, None] * v[:, idx].T


def _sizes(shape: ModelShape) -> str:
    """The widths that must agree for a module to move unaligned (a decoder's heads and MLP too)."""
    sizes = shape.widths()
    return f"{sizes['hidden_size']} dims" if len(sizes) == 1 else ", ".join(f"{k} {v}" for k, v in sizes.items())


def _fold(mapped: dict[tuple[int, str, str], np.ndarray], kind: ModuleKind, alignment: Alignment,
          lora_b: str) -> dict[tuple[int, str, str], np.ndarray]:
    """Fold each layer's maps into the layer-mapped teacher weights (reads: W M_in, writes: M_out W)."""

    def maps(l: int, space: str) -> LayerMap:
        lm = alignment.get(l, space)
        if lm is None:
            raise TransmodError(
                f"the {alignment.method} alignment has no {space!r} space for student layer {l}; "
                + ("sample with --lora-outputs for --lora-b output" if space != "h" else "refit it")
            )
        return lm

    out = {}
    for (l, site, param), tensor in mapped.items():
        if param == kind.read_bias:  # h_t ~ M_in h_s + c: the offset moves into the reading weight's bias
            offset = maps(l, "h").offset
            reader = mapped[(l, site, kind.reader)]
            if offset is not None:
                tensor = (tensor + np.asarray(reader, np.float64) @ offset).astype(tensor.dtype)
        elif param in kind.hidden_axes:
            _, direction = kind.hidden_axes[param]
            lm = maps(l, kind.space(site, direction, lora_b == "output"))
            tensor = lm.read(tensor) if direction == "in" else lm.write(tensor)
        out[(l, site, param)] = np.ascontiguousarray(tensor)
    return out


def check_teacher_student(teacher: ModelShape, student: ModelShape) -> None:
    """Refuse a pair no module moves between: a decoder and an encoder first (swapping them would not help), then a
    student deeper than its teacher."""
    check_family(teacher, student)
    if student.num_layers > teacher.num_layers:
        raise TransmodError(
            f"--student-model {student.name} ({student.num_layers} layers) is deeper than --teacher-model "
            f"{teacher.name} ({teacher.num_layers} layers); swap them"
        )


def check_family(teacher: ModelShape, student: ModelShape) -> None:
    """A decoder LLM's LoRA moves to any decoder family (`DECODER_SITES`: Llama, Mistral, Qwen2/3 and Gemma share
    the projections and the spaces they read and write; their norms and head sizes are what the alignment maps),
    never between a decoder and an encoder, whose layers read and write different spaces."""
    if teacher.arch.decoder != student.arch.decoder:
        decoder, encoder = (teacher, student) if teacher.arch.decoder else (student, teacher)
        raise TransmodError(
            f"{decoder.name} is a decoder LLM ({decoder.model_type}) and {encoder.name} an encoder "
            f"({encoder.model_type}): their layers read and write different spaces, so no module moves between "
            "them; pick two decoders or two encoders"
        )


def default_format(kind: ModuleKind, student: ModelShape) -> str:
    """A decoder LLM's LoRA is written in peft's format; everything else (decoder adapters too) in adapters'."""
    return "peft" if student.arch.decoder and kind.peft_type is not None else "adapters"


def check_student_format(student: ModelShape, fmt: str, kind: ModuleKind, source: str | Path) -> None:
    """Refuse a format the student's module (read from `source`) cannot be written in (a decoder's LoRA: peft's
    only; a bottleneck adapter: adapters' only)."""
    check_writable(kind, fmt, source)
    if check_format(fmt) == "adapters" and default_format(kind, student) == "peft":
        raise TransmodError(f"{student.name}: a decoder LLM's LoRA is written in peft's format; give --format peft")


def student_config(module: Module, teacher: ModelShape, student: ModelShape, kept_layers: set[int], provenance: dict) -> dict:
    """The module's config rewritten for the student: same bottleneck or rank, the student's names."""
    config = copy.deepcopy(module.config)
    cfg = config["config"]
    module.spec.for_student(cfg, teacher.hidden_size, student.hidden_size)
    cfg["leave_out"] = sorted(set(range(student.module_layers)) - kept_layers)
    config.update(
        hidden_size=student.hidden_size, model_type=student.model_type, model_class=student.model_class,
        model_name=student.name, transmod=provenance,
    )
    return config


def transfer(
    module: Module,
    teacher: ModelShape,
    student: ModelShape,
    mapping: str,
    alignment: Alignment | None = None,
    lora_b: str = "study",
) -> Module:
    """The student-shaped module, in memory: weights mapped and aligned, config rewritten for the student."""
    check_teacher_student(teacher, student)
    return student_module(module, teacher, student, mapping, alignment, lora_b)


def student_module(
    module: Module,
    teacher: ModelShape,
    student: ModelShape,
    mapping: str,
    alignment: Alignment | None = None,
    lora_b: str = "study",
) -> Module:
    """`transfer` of a pair that `check_teacher_student` has accepted: the alignment checked against the models
    and the module, then the weights mapped and aligned and the config rewritten."""
    source = str(module.path)
    if alignment is not None:
        alignment.check_models(teacher, student, mapping, "the alignment")
        if alignment.hook is not None and alignment.hook != module.kind:
            raise TransmodError(
                f"the alignment was fitted on {alignment.hook} samples but {source} is a {module.kind} module; "
                f"fit it on samples taken with --peft {module.kind}"
            )
    weights = transfer_weights(module, teacher, student, mapping, alignment, lora_b)
    method = alignment.method if alignment is not None else None
    provenance = {"teacher": teacher.name, "student": student.name, "mapping": mapping,
                  "aligned": alignment is not None, "align": method,
                  "lora_b": lora_b if module.kind == "lora" else None}
    if mapping in SAMPLED_MAPPINGS and alignment is not None:  # chosen on samples: which teacher layers it chose
        provenance["teacher_layers"] = alignment.groups()
    config = student_config(module, teacher, student, {l for l, _, _ in weights}, provenance)
    return Module(module.path, config, weights)


def transfer_module(
    module_dir: str | Path,
    teacher: ModelShape,
    student: ModelShape,
    mapping: str,
    out: str | Path,
    alignment: Alignment | None = None,
    lora_b: str = "study",
    fmt: str | None = None,
    *,
    overwrite: bool = False,
    inputs: Sequence[str | Path] = (),
    then: Callable[[Module, Module], Module] | None = None,
) -> Module:
    """Read, transfer and save a module (`fmt`: adapters' or peft's layout, by default `default_format`'s); returns
    the teacher module read. `then(teacher_module, moved)` may change the moved module before it is written
    (healing, `transmod.align.starts`).

    `out` must be new, or an earlier transferred module with `overwrite`; it may not touch `inputs`, the
    module or the models (`transmod.atomic.check_output`)."""
    inputs = [module_dir, teacher.name, student.name, *inputs]
    check_output(out, MODULE_KIND, inputs, overwrite)
    module = read_module(module_dir, teacher)
    fmt = fmt or default_format(module.spec, student)
    check_student_format(student, fmt, module.spec, module_dir)
    moved = transfer(module, teacher, student, mapping, alignment, lora_b)
    if then is not None:
        moved = then(module, moved)
    write_module(moved, module, student, out, fmt, overwrite=overwrite, inputs=inputs)
    return module
