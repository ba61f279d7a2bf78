"""Layer similarity for the `cka` layer map: linear CKA between every student and every teacher layer.

When depths do not divide (or a student was distilled from other layers than every k-th), the layer
whose states look most like a student layer's is a better source than a fixed stride. Linear CKA (centred
kernel alignment) compares two layers' states over the same tokens whatever their widths, and is blind
to rotations and scale, so it needs no alignment first. The map is then the monotone one with the
largest summed CKA (`transmod.align.layermap.monotone_map`).

CKA is computed in its kernel form on the first `max_tokens` shared tokens of the fit part (never the
held-out tail): memory is (student layers + 1) token x token matrices, whatever the widths or the
number of tokens sampled.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from transmod.align.layermap import SAMPLED_MAPPINGS, layer_map, monotone_map
from transmod.align.pairing import paired_batches, shared_rows, split_point
from transmod.align.samplefile import SampleFile
from transmod.errors import TransmodError

CKA_TOKENS = 1024


def _gram(x: np.ndarray) -> np.ndarray:
    """The centred token Gram matrix, scaled to unit Frobenius norm (zero when the states do not vary)."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(0)
    k = x @ x.T
    norm = np.linalg.norm(k)
    return k / norm if norm > 1e-12 else k


def cka_similarity(teacher: SampleFile, student: SampleFile, space: str = "h", holdout: float = 0.0,
                   max_tokens: int = CKA_TOKENS) -> np.ndarray:
    """(student layers x teacher layers) linear CKA of the `space` states on the first shared fit tokens."""
    mask_t, mask_s, n = shared_rows(teacher, student)
    stop = min(split_point(n, holdout), max_tokens)
    if stop < 2:
        raise TransmodError(f"{teacher.path} and {student.path}: --mapping cka needs at least 2 shared tokens to "
                            "compare layers on; sample more text")
    t_cols = [f"{space}{l}" for l in range(teacher.num_layers)]
    s_cols = [f"{space}{l}" for l in range(student.num_layers)]
    parts = list(paired_batches(teacher, student, t_cols, s_cols, stop, 0, stop, (mask_t, mask_s)))
    return cka_of_states({c: np.concatenate([t[c] for t, _ in parts]) for c in t_cols},
                         [np.concatenate([s[c] for _, s in parts]) for c in s_cols])


def cka_of_states(teacher: dict[str, np.ndarray], student: Sequence[np.ndarray]) -> np.ndarray:
    """(student layers x teacher layers) linear CKA of the same tokens' states, each layer's (tokens x width) array
    in depth order; `teacher`'s are dropped as they are read (one teacher Gram at a time)."""
    s_grams = [_gram(x) for x in student]
    out = np.zeros((len(s_grams), len(teacher)))
    for j, column in enumerate(list(teacher)):
        gram = _gram(teacher.pop(column))
        out[:, j] = [float(np.sum(g * gram)) for g in s_grams]
    return out


def layer_groups(mapping: str, teacher: SampleFile, student: SampleFile, holdout: float = 0.0) -> list[list[int]]:
    """The teacher layer group of each student layer: SKIP/AVG from the depths, `cka` from the samples."""
    if mapping in SAMPLED_MAPPINGS:
        return monotone_map(cka_similarity(teacher, student, holdout=holdout))
    return layer_map(mapping, teacher.num_layers, student.num_layers)
