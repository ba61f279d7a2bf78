"""Attention heads aligned as whole heads, each key/value head kept with its group of query heads.

A decoder's query, key and value vectors are rotated by position (rotary embeddings) in pairs of
dimensions inside a head, and each key/value head serves a fixed group of query heads (grouped-query
attention). So heads are never mixed or permuted inside: a student query head takes one whole teacher
query head, dimension d to dimension d, and the student's key/value head of a group takes the teacher
key/value head whose group its query heads came from. That holds for every alignment method; what
differs is only how heads are scored (`lsa`: signed r; the other fitted methods as well, since a dense
or sign-flipping map inside a head would break rotary embeddings; `select`: evenly spaced, no data).

A head pair's score is the mean over the head dimension of the per-dimension Pearson r between the
student head's and the teacher head's outputs (the input of o_proj). Groups are matched by a linear sum
assignment on the best within-group assignment's summed score, then query heads inside each matched group.
"""

from __future__ import annotations

import numpy as np

from transmod.errors import TransmodError


def check_heads(teacher: dict, student: dict) -> None:
    """Refuse pairs whose heads cannot be selected whole: another head size, or more heads in the student."""
    hd_t, hd_s = int(teacher["head_dim"]), int(student["head_dim"])
    if hd_t != hd_s:
        raise TransmodError(
            f"{teacher['model']} has heads of {hd_t} dimensions and {student['model']} of {hd_s}: transmod moves LoRAs "
            "between decoders whose head_dim agrees (whole heads are selected; rotary embeddings fix each head's "
            "dimensions); pick a student of the same head_dim"
        )
    kv_t, kv_s = int(teacher["num_kv_heads"]), int(student["num_kv_heads"])
    per_t, per_s = int(teacher["num_heads"]) // kv_t, int(student["num_heads"]) // kv_s
    if kv_s > kv_t or per_s > per_t:
        raise TransmodError(
            f"{student['model']} has {kv_s} key/value heads of {per_s} query heads each, more than {teacher['model']}'s "
            f"{kv_t} of {per_t}: alignments select a student's heads among a larger teacher's; swap the models"
        )


def head_scores(r: np.ndarray, head_dim: int) -> np.ndarray:
    """(student heads x teacher heads): the mean r of dimension d with dimension d, over the head dimension."""
    hs, ht = r.shape[0] // head_dim, r.shape[1] // head_dim
    return np.einsum("idjd->ij", r.reshape(hs, head_dim, ht, head_dim)) / head_dim


def assign_heads(score: np.ndarray, kv_s: int, kv_t: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(teacher query head of each student query head, teacher key/value head of each student one, mean score)."""
    from scipy.optimize import linear_sum_assignment

    per_s, per_t = score.shape[0] // kv_s, score.shape[1] // kv_t
    value = np.empty((kv_s, kv_t))
    inner: dict[tuple[int, int], np.ndarray] = {}
    for a in range(kv_s):
        for b in range(kv_t):
            block = score[a * per_s:(a + 1) * per_s, b * per_t:(b + 1) * per_t]
            rows, cols = linear_sum_assignment(-block)
            inner[(a, b)] = cols[np.argsort(rows)]
            value[a, b] = block[rows, cols].sum()
    rows, groups = linear_sum_assignment(-value)
    kv = groups[np.argsort(rows)]
    q = np.concatenate([kv[a] * per_t + inner[(a, kv[a])] for a in range(kv_s)])
    return q.astype(np.int64), kv.astype(np.int64), float(score[np.arange(len(q)), q].mean())


def select_heads(heads_s: int, heads_t: int, kv_s: int, kv_t: int) -> tuple[np.ndarray, np.ndarray]:
    """Data-free: evenly spaced key/value heads, and evenly spaced query heads inside each group."""
    per_s, per_t = heads_s // kv_s, heads_t // kv_t
    kv = (np.arange(kv_s, dtype=np.int64) * kv_t) // kv_s
    within = (np.arange(per_s, dtype=np.int64) * per_t) // per_s
    return np.concatenate([g * per_t + within for g in kv]), kv


def head_dims(heads: np.ndarray, head_dim: int) -> np.ndarray:
    """A head selection as a per-dimension one: student dim h*hd+d takes teacher dim heads[h]*hd+d."""
    return (heads[:, None] * head_dim + np.arange(head_dim)).reshape(-1).astype(np.int64)
