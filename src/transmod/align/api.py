"""The Python API: move a module from a teacher model to a student in one call, as `transmod transfer` does.

    import transmod
    moved = transmod.transfer("my_lora", teacher="Qwen/Qwen2.5-7B", student="Qwen/Qwen2.5-1.5B",
                              mapping="skip", samples="text.txt", method="procrustes")
    moved.save("student_lora")

Every decision lives here, not in the command line, which parses its options and calls `transfer`: which
alignment the options ask for, the checks that refuse bad input (each once, before any model is loaded), and
which options would go unused (refused, never ignored). Importing this module loads neither torch nor pyarrow
nor scipy: a same-width pair moves without them.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from transmod.align.layermap import SAMPLED_MAPPINGS, mapping_names
from transmod.align.methods import METHODS, NOTHING, check_method, check_ridge, data_free
from transmod.align.texts import read_texts
from transmod.align.transfer import (
    LORA_B_ALIGNMENTS,
    check_student_format,
    check_teacher_student,
    default_format,
    student_module,
)
from transmod.atomic import check_output
from transmod.errors import TransmodError
from transmod.modules.architectures import ModelShape, load_model_shape
from transmod.modules.io import read_module, write_module
from transmod.modules.kind import ModuleKind
from transmod.modules.module import MODULE_KIND, Module

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transmod.align.alignment import Alignment
    from transmod.align.texts import Example

DEFAULT_MAX_TOKENS = 20000  # tokens sampled from `samples` for the alignment fitted on the way


class TransferNotice(UserWarning):
    """A choice `transfer` made that the call did not spell out (a decoder's data-free alignment, the teacher layers
    that `cka` chose)."""


@dataclass(frozen=True, eq=False)
class Transferred:
    """A module moved to the student, in memory, and how: `save` writes it."""

    module: Module  # the student-shaped module (weights and config)
    source: Module  # the teacher's module, as read
    student: ModelShape
    alignment: Alignment | None  # None: moved unaligned (the widths agree)
    method: str | None  # the alignment's method, None when unaligned
    mapping: str
    format: str  # the layout `save` writes unless told otherwise (adapters or peft)
    inputs: tuple[str, ...]  # what an output may not be, hold or lie inside

    def save(self, out: str | Path, overwrite: bool = False, format: str | None = None) -> Path:
        """Write the module to `out`, a new path (or an earlier transferred module, replaced with `overwrite`), in
        adapters' or peft's layout; whole or not at all, never over anything transmod did not write."""
        fmt = format or self.format
        if fmt != self.format:
            check_student_format(self.student, fmt, self.source.spec, self.source.path)
        write_module(self.module, self.source, self.student, out, fmt, overwrite=overwrite, inputs=self.inputs)
        return Path(out)


def transfer(
    module: str | Path, *, teacher: str | Path, student: str | Path, mapping: str, samples: str | Path | None = None,
    alignment: str | Path | None = None, method: str | None = None, lora_b: str = "study", ridge: float | None = None,
    max_tokens: int | None = None, format: str | None = None, out: str | Path | None = None, overwrite: bool = False,
) -> Transferred:
    """Move the module folder `module` (adapters' save_adapter or peft's save_pretrained) from `teacher` to
    `student` (hub ids or local folders), the teacher's layers mapped by `mapping` (skip, avg; cka from samples).

    Hidden dimensions are aligned by an `alignment` file (`transmod assign` or `fit-alignment`), or fitted on the
    way on the text or parquet file `samples` (`max_tokens` of them; `method` lsa unless named; `ridge` for linear
    and procrustes), or data-free (`method` select or embed). With neither, a same-width pair moves unaligned and a
    decoder LLM's narrower student is aligned from the input embeddings (a `TransferNotice` says so). With `out`,
    the result is saved there too. Bad input raises `TransmodError` before any model is loaded.
    """
    inputs = tuple(str(p) for p in (module, teacher, student, samples, alignment) if p is not None)
    if out is not None:
        check_output(out, MODULE_KIND, inputs, overwrite)  # before the work, not after it
    elif overwrite:
        raise TransmodError("overwrite=True replaces an earlier transferred module at out=, but no out= was given: "
                            "give out=, or drop overwrite")
    _check_choice("--mapping", mapping, mapping_names())
    _check_choice("--lora-b", lora_b, LORA_B_ALIGNMENTS)
    method = _method(method, samples, alignment)
    ridge, max_tokens = _fit_options(method, samples, alignment, ridge, max_tokens)
    examples = read_texts(samples) if samples is not None else None  # bad text fails now, not after loading
    teacher_shape, student_shape = load_model_shape(str(teacher)), load_model_shape(str(student))
    check_teacher_student(teacher_shape, student_shape)
    given = _load_alignment(alignment, method)
    source = read_module(module, teacher_shape)  # a bad module or format is refused before any sampling
    if lora_b != "study" and source.spec.spaces(True, teacher_shape.arch) == source.spec.spaces(False, teacher_shape.arch):
        raise TransmodError(f"--lora-b {lora_b} aligns an encoder LoRA's B on its query/value outputs, but {module} is "
                            f"a {source.spec.label} on {teacher_shape.model_type}, which has none to align, so it "
                            "would be ignored: drop --lora-b")
    fmt = format or default_format(source.spec, student_shape)
    check_student_format(student_shape, fmt, source.spec, module)
    if given is None and examples is not None:
        used = _from_samples(examples, teacher_shape, student_shape, source.spec.name, mapping, method, lora_b,
                             max_tokens, ridge)
    else:
        used = given or _data_free(method, teacher_shape, student_shape, source.spec, mapping, lora_b)
    if mapping in SAMPLED_MAPPINGS and used is not None:
        _notice_layers(mapping, used)
    moved = Transferred(student_module(source, teacher_shape, student_shape, mapping, used, lora_b), source,
                        student_shape, used, used.method if used else None, mapping, fmt, inputs)
    if out is not None:
        moved.save(out, overwrite)
    return moved


def _notice_layers(mapping: str, alignment: Alignment) -> None:
    """Say which teacher layers a map chosen on samples picked (the written module records them too)."""
    chosen = ", ".join("+".join(map(str, group)) for group in alignment.groups())
    warnings.warn(f"--mapping {mapping} chose teacher layers {chosen} for student layers 0 to "
                  f"{len(alignment.groups()) - 1}", TransferNotice, stacklevel=3)


def _method(method: str | None, samples: object, alignment: object) -> str | None:
    """The alignment method the options name: samples are always used (lsa unless `method` names another), a
    data-free method with samples is refused, and a fitted one needs samples or an alignment file."""
    if samples is not None and alignment is not None:
        raise TransmodError(f"--samples {samples} and --alignment {alignment}: the alignment file is used as it is, "
                            "so the samples would be ignored; give one of them")
    method = check_method(method) if method else ("lsa" if samples is not None else None)
    if samples is not None and data_free(method):
        raise TransmodError(f"--align {method} reads no samples, so --samples {samples} would be ignored: drop "
                            "--samples, or name a method fitted on them")
    if method is not None and not data_free(method) and samples is None and alignment is None:
        raise TransmodError(f"--align {method} fits the alignment on sampled hidden states: give --samples or --alignment")
    return method


def _check_choice(option: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise TransmodError(f"unknown {option} {value!r}: use one of {', '.join(choices)}")


def _fit_options(method: str | None, samples: object, alignment: object, ridge: float | None,
                 max_tokens: int | None) -> tuple[float, int]:
    """`ridge` and `max_tokens`, checked and defaulted, or refused where nothing would use them: `ridge` shapes
    only the linear and procrustes maps fitted here, `max_tokens` only the sampling of `samples`."""
    if ridge is not None and alignment is not None:
        raise TransmodError(f"--ridge: the maps of --alignment {alignment} are fitted already, so it would be ignored: "
                            "drop --ridge, or refit them with `transmod fit-alignment --ridge`")
    if max_tokens is not None:
        if samples is None:
            raise TransmodError("--max-tokens limits the tokens sampled from --samples, and no --samples are given: "
                                "drop --max-tokens, or give --samples")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise TransmodError(f"--max-tokens must be a whole number of at least 1, got {max_tokens!r}")
    return check_ridge(method, ridge), DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens


def _load_alignment(path: str | Path | None, method: str | None) -> Alignment | None:
    """The alignment file given, if any: it must hold the method named (if one is)."""
    if path is None:
        return None
    from transmod.align.alignment import Alignment

    alignment = Alignment.load(path)
    if method and method != alignment.method:
        raise TransmodError(f"--alignment {path} holds a {alignment.method} alignment, not --align {method}; drop "
                            "--align or refit")
    return alignment


def _data_free(method: str | None, teacher: ModelShape, student: ModelShape, kind: ModuleKind, mapping: str,
               lora_b: str) -> Alignment | None:
    """Without samples or an alignment file: the data-free method named (select, embed), or none. With none, a
    same-width pair moves unaligned and a decoder LLM's narrower student is aligned from the input embeddings."""
    if method is None:
        if not teacher.arch.decoder or teacher.widths() == student.widths() or mapping in SAMPLED_MAPPINGS:
            return None  # the identity; a pair that needs an alignment is refused by the transfer, saying so
        warnings.warn("no --samples or --alignment: aligning the residual stream data-free from the input embeddings "
                      "of the shared vocabulary (--align embed)", TransferNotice, stacklevel=3)
        method = "embed"
    spaces = kind.spaces(lora_b == "output", teacher.arch)
    build = METHODS[method].function()
    if METHODS[method].reads == NOTHING:  # from the shapes alone
        return build(teacher.describe(), student.describe(), mapping, spaces)
    return build(teacher, student, mapping, spaces)  # from the models' weights


def _from_samples(examples: Sequence[Example], teacher: ModelShape, student: ModelShape, peft: str, mapping: str,
                  method: str, lora_b: str, max_tokens: int, ridge: float) -> Alignment:
    """Sample both models on the examples, then assign (lsa, through the correlation) or fit the alignment. Two
    models that share one tokenizer run side by side and write nothing (`transmod.align.streaming`); two tokenizers
    pair tokens by their text spans, through sample files in a temporary folder."""
    from transmod.align.sampling import batchable, load_tokenizer, tokenizer_fingerprint

    lora_outputs = lora_b == "output"  # only a LoRA samples its outputs (transmod.modules.kinds)
    tokenizers = [batchable(load_tokenizer(shape.name, (peft,)), shape.name) for shape in (teacher, student)]
    if tokenizer_fingerprint(tokenizers[0]) == tokenizer_fingerprint(tokenizers[1]):
        from transmod.align.streaming import ModelPair, streamed_alignment

        pair = ModelPair(teacher, student, tokenizers[0], examples, peft, lora_outputs, max_tokens)
        return streamed_alignment(pair, mapping, method, ridge)
    return _from_files(examples, teacher, student, peft, mapping, method, lora_outputs, max_tokens, ridge)


def _from_files(examples: Sequence[Example], teacher: ModelShape, student: ModelShape, peft: str, mapping: str,
                method: str, lora_outputs: bool, max_tokens: int, ridge: float) -> Alignment:
    """`_from_samples` through two sample files, whose tokens pair by their text spans (`transmod.align.pairing`)."""
    from transmod.align.alignment import assign_correlation, fit_alignment
    from transmod.align.correlation import correlate_samples
    from transmod.align.samplefile import SampleFile
    from transmod.align.sampling import sample_model

    with tempfile.TemporaryDirectory(prefix="transmod-") as tmp:
        files = {}
        for who, shape in (("teacher", teacher), ("student", student)):
            files[who] = Path(tmp) / f"{who}.parquet"
            sample_model(shape.name, examples, {peft: files[who]}, max_tokens=max_tokens, lora_outputs=lora_outputs)
        sampled = SampleFile.open(files["teacher"]), SampleFile.open(files["student"])
        if method == "lsa":
            return assign_correlation(correlate_samples(*sampled, mapping))
        return fit_alignment(*sampled, mapping, method, ridge=ridge)
