"""Data-free alignment (`embed`): the residual stream matched through the input embeddings.

Two models of one family share most of their vocabulary, and a token's input embedding is the first
state of the residual stream. So the rows of both embedding matrices for the tokens whose strings agree
are paired samples of the residual stream, read from the weights alone: the per-dimension Pearson r over
those tokens, then the study's assignment, gives the residual maps (`h`, `f`). The spaces no embedding
reaches (a decoder's heads and MLP neurons, an encoder's query/value outputs) take `select`'s evenly
spaced maps. No text is sampled, so it is also the fallback when no samples are given.

Only the embedding matrix is read (one tensor of the safetensors files), never the whole model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from transmod.align.alignment import Alignment, LayerMap, assign, select_alignment
from transmod.align.correlation import PearsonAccumulator
from transmod.errors import TransmodError
from transmod.modules.architectures import ModelShape

MIN_SHARED = 16  # fewer shared token strings than this say nothing about a 1000-dimensional residual stream
MIN_SHARED_SHARE = 0.5  # of the smaller vocabulary: below it the tokenizers are of different families
EMBEDDING_KEYS = ("embed_tokens.weight", "word_embeddings.weight")
RESIDUAL = ("h", "f")


def _model_file(model: str, name: str) -> Path | None:
    """A file of a local model folder or a cached/fetched hub model; None when it has none."""
    from transmod.hub import local_files_only, looks_local

    if looks_local(model):
        path = Path(model).expanduser() / name
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(model, name, local_files_only=local_files_only(model)))
    except Exception:  # not in this repository, or not reachable: the caller says what is missing
        return None


def input_embeddings(model: str) -> np.ndarray:
    """The input embedding matrix (vocab x hidden) as float32, read from the model's safetensors alone."""
    from safetensors import safe_open

    index = _model_file(model, "model.safetensors.index.json")
    if index is not None:
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        files = sorted({f for k, f in weight_map.items() if k.endswith(EMBEDDING_KEYS)})
    else:
        files = ["model.safetensors"]
    for name in files:
        path = _model_file(model, name)
        if path is None:
            continue
        try:
            with safe_open(str(path), framework="numpy") as f:
                key = next((k for k in f.keys() if k.endswith(EMBEDDING_KEYS)), None)
                if key is not None:
                    return np.asarray(f.get_tensor(key), dtype=np.float32)
        except Exception as exc:  # a damaged file
            raise TransmodError(f"{path}: not a readable safetensors file ({exc}); restore the model's weights") from None
    raise TransmodError(f"{model}: no input embedding ({' or '.join(EMBEDDING_KEYS)}) in its safetensors weights; "
                        "--align embed reads them: give a model folder with safetensors weights")


def shared_vocabulary(teacher_model: str, student_model: str) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (teacher, student) of the non-special token strings both tokenizers hold."""
    from transformers import AutoTokenizer

    from transmod.hub import load_error, local_files_only

    vocabs, specials = [], set()
    for model in (teacher_model, student_model):
        try:
            tok = AutoTokenizer.from_pretrained(model, local_files_only=local_files_only(model))
        except Exception as exc:
            raise load_error(model, "tokenizer", exc) from None
        vocabs.append(tok.get_vocab())
        specials |= set(tok.all_special_tokens)
    shared = sorted(set(vocabs[0]) & set(vocabs[1]) - specials)
    smaller = min(len(v) for v in vocabs)
    if len(shared) < max(MIN_SHARED, MIN_SHARED_SHARE * smaller):
        raise TransmodError(
            f"{teacher_model} and {student_model} share {len(shared)} token strings of {smaller}: too little vocabulary "
            f"for --align embed (it needs {100 * MIN_SHARED_SHARE:.0f} % and at least {MIN_SHARED}); give --samples "
            "to align on sampled text instead"
        )
    return (np.array([vocabs[0][t] for t in shared], dtype=np.int64),
            np.array([vocabs[1][t] for t in shared], dtype=np.int64))


def embedding_alignment(teacher: ModelShape, student: ModelShape, mapping: str, spaces: tuple[str, ...]) -> Alignment:
    """The `embed` alignment: residual maps from the shared vocabulary's embeddings, `select` for the rest."""
    ids_t, ids_s = shared_vocabulary(teacher.name, student.name)
    e_t, e_s = input_embeddings(teacher.name), input_embeddings(student.name)
    for shape, e in ((teacher, e_t), (student, e_s)):
        if e.shape[1] != shape.hidden_size:  # ALBERT's factorised embeddings are projected up to the hidden size
            raise TransmodError(f"{shape.name}: its input embeddings are {e.shape[1]} wide, not its hidden size "
                                f"{shape.hidden_size}, so they are no states of the residual stream for --align embed "
                                "to pair; give --samples to align on sampled text")
    keep = (ids_t < len(e_t)) & (ids_s < len(e_s))  # tokenizers may hold more tokens than the embedding rows
    acc = PearsonAccumulator(e_s.shape[1], e_t.shape[1])
    acc.update(e_s[ids_s[keep]], e_t[ids_t[keep]])
    sigma, mean_r = assign(acc.result()[0])
    out = select_alignment(teacher.describe(), student.describe(), mapping, spaces)
    out.method, out.num_tokens = "embed", int(keep.sum())
    out.layers = [LayerMap(lm.student_layer, lm.teacher_layers, lm.space, sigma=sigma.copy(), mean_r=mean_r)
                  if lm.space in RESIDUAL else lm for lm in out.layers]
    return out
