"""The one-shot transfer's alignment without a sample file: teacher and student run side by side on the same
batches, and the statistics are accumulated on the way (`transmod.align.api`).

Two models that share one tokenizer keep the same tokens in the same order (`transmod.align.sampling`), so each
batch's rows pair one to one, as two sample files of them would (`transmod.align.pairing`). Nothing is written:
memory is the two models, one forward pass's states of each (`sampling.STATES_BUDGET`) and the running sums of a
pass over the layers (`correlation.layer_chunks`; a model too wide for one pass is run once per chunk). The
result equals what `transmod sample` then `correlate` + `assign` or `fit-alignment` give on the same examples.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterator, Sequence

import numpy as np
import torch

from transmod.align.alignment import (
    Alignment,
    accumulator,
    assign_correlation,
    check_fit,
    check_tokens,
    fitted_maps,
)
from transmod.align.correlation import (
    accumulate_pairs,
    correlation,
    layer_chunks,
    new_accumulators,
    state_columns,
)
from transmod.align.layermap import SAMPLED_MAPPINGS, layer_map, monotone_map
from transmod.align.layersim import CKA_TOKENS, cka_of_states
from transmod.align.methods import dense
from transmod.align.pairing import Batch, prefetched
from transmod.align.sampling import Sampled, load_model, pass_tokens, sampled_batches
from transmod.align.texts import Example
from transmod.errors import TransmodError
from transmod.modules.architectures import ModelShape, module_depths
from transmod.modules.kinds import get_kind


class ModelPair:
    """A teacher and a student that share `tokenizer` (padding on the right: `sampling.batchable`), loaded once,
    sampled at the hook points of module kind `peft` on `examples` (at most `max_tokens` tokens)."""

    def __init__(self, teacher: ModelShape, student: ModelShape, tokenizer, examples: Sequence[Example], peft: str,
                 lora_outputs: bool, max_tokens: int) -> None:
        self.shapes = teacher, student
        self.tokenizer, self.examples, self.peft, self.max_tokens = tokenizer, examples, peft, max_tokens
        kind = get_kind(peft)
        theirs = kind.spaces(lora_outputs, teacher.arch)
        self.spaces = [s for s in kind.spaces(lora_outputs, student.arch) if s in theirs]
        self.models = load_model(teacher.name), load_model(student.name)

    @property
    def names(self) -> tuple[str, str]:
        return self.shapes[0].name, self.shapes[1].name

    def batches(self, spaces: Collection[str], columns: tuple[Collection[str], Collection[str]],
                max_tokens: int) -> Iterator[tuple[Batch, Batch]]:
        """(teacher, student) states of the same tokens, pass by pass: `columns` (`{space}{depth}`) of each. Each
        model runs in a thread of its own on half the cores (a small model's forward pass spends much of its time
        in per-operation thread hand-offs), one pass ahead of the statistics."""
        common = min(pass_tokens(shape) for shape in self.shapes)  # both models' passes cut alike
        threads = torch.get_num_threads()
        runs = [prefetched(self._run(model, shape.name, spaces, wanted, max_tokens, common, max(1, threads // 2)))
                for model, shape, wanted in zip(self.models, self.shapes, columns)]
        cut = len(self.peft) + 1
        try:
            for t, s in zip(*runs):
                if t.tokens != s.tokens or any(not np.array_equal(t.keys[k], s.keys[k]) for k in t.keys):
                    raise TransmodError(f"{self.names[0]} and {self.names[1]} kept different tokens of the same batch "
                                        "although their tokenizers are alike; sample each with `transmod sample` instead")
                yield {k[cut:]: v for k, v in t.states.items()}, {k[cut:]: v for k, v in s.states.items()}
        finally:
            for run in runs:
                run.close()  # stops and joins its thread
            torch.set_num_threads(threads)

    def _run(self, model, name: str, spaces: Collection[str], wanted: Collection[str], max_tokens: int,
             tokens_per_pass: int, threads: int) -> Iterator[Sampled]:
        """One model's passes (`sampling.sampled_batches`), on `threads` threads, with a tokenizer of its own (a
        fast tokenizer is not safe to share between threads)."""
        torch.set_num_threads(threads)
        yield from sampled_batches(model, copy.deepcopy(self.tokenizer), self.examples, {self.peft: tuple(spaces)},
                                   model_name=name, max_tokens=max_tokens, columns={f"{self.peft}:{c}" for c in wanted},
                                   tokens_per_pass=tokens_per_pass)

    def groups(self, mapping: str) -> list[list[int]]:
        """The teacher layer group of each student depth: SKIP/AVG from the depths, `cka` from the first
        `CKA_TOKENS` tokens' `h` states (as `layersim.cka_similarity` reads them from sample files)."""
        teacher, student = self.shapes
        if mapping not in SAMPLED_MAPPINGS:
            return layer_map(mapping, teacher.num_layers, student.num_layers)
        columns = [f"h{l}" for l in range(teacher.num_layers)], [f"h{l}" for l in range(student.num_layers)]
        parts = list(self.batches(("h",), columns, min(self.max_tokens, CKA_TOKENS)))
        if sum(len(s["h0"]) for _, s in parts) < 2:
            raise TransmodError(f"{self.names[0]} and {self.names[1]}: --mapping cka needs at least 2 tokens to compare "
                                "layers on; sample more text")
        return monotone_map(cka_of_states({c: np.concatenate([t[c] for t, _ in parts]) for c in columns[0]},
                                          [np.concatenate([s[c] for _, s in parts]) for c in columns[1]]))

    def accumulate(self, acc: dict, groups: list[list[int]]) -> tuple[list[list[int]], int]:
        """One run of both models through `acc` (see `correlation.accumulate_pairs`); returns the teacher depths
        each student module layer read and the number of tokens."""
        depths = module_depths(self.shapes[1].describe())
        counted = []

        def counting() -> Iterator[tuple[Batch, Batch]]:
            for pair in self.batches(sorted({s for _, s in acc}), state_columns(acc, groups, depths), self.max_tokens):
                counted.append(len(next(iter(pair[1].values()))))
                yield pair

        what = f"{len(acc)} layer pairs of {self.names[0]} x {self.names[1]}"
        return accumulate_pairs(counting(), acc, groups, depths, what, self.max_tokens), sum(counted)


def streamed_alignment(pair: ModelPair, mapping: str, method: str, ridge: float) -> Alignment:
    """`method`'s alignment of the pair's states, the teacher's layers mapped by `mapping`: lsa as `correlate` +
    `assign` make it, the others as `fit_alignment` does."""
    teacher, student = (shape.describe() for shape in pair.shapes)
    check_fit(teacher, student, pair.spaces, method, ridge)
    groups = pair.groups(mapping)
    lsa = method == "lsa"
    out = Alignment(method, mapping, teacher, student, 0, None if lsa else ridge, None if lsa else pair.peft,
                    paired_share=1.0)
    for layers in layer_chunks(teacher, student, pair.spaces, dense(method)):  # a run per chunk of layers
        acc = new_accumulators(teacher, student, pair.spaces, layers, accumulator(method), pearson_only=("a",))
        read, out.num_tokens = pair.accumulate(acc, groups)
        check_tokens(teacher, student, pair.spaces, method, out.num_tokens, f"{pair.names[0]} and {pair.names[1]}")
        if lsa:  # the study's assignment on r, as `transmod assign` reads it from a correlation file; one r at a time
            for key in list(acc):
                single = correlation(mapping, read, {key: acc.pop(key)}, (teacher, student), out.num_tokens, 1.0,
                                     pair.names)
                out.layers += assign_correlation(single).layers
        else:
            out.layers += fitted_maps(method, acc, read, ridge, out)
    return out
