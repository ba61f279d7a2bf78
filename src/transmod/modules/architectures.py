"""Where modules live in each supported architecture, as the `adapters` library 1.3 wires them.

One table is the single source of truth for hook points (sampling) and weight names (transfer),
so supporting a new encoder is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transmod.errors import TransmodError, read_json


@dataclass(frozen=True)
class Architecture:
    model_types: tuple[str, ...]
    layers_path: str  # module path of the layer list inside the base model
    layers_attr: str  # config attribute with the number of layers
    hidden_attr: str  # config attribute with the hidden size
    adapter_site: str  # sub-module of a layer holding the output bottleneck adapter
    adapter_input: str  # sub-module of a layer whose forward output the output adapter reads
    query: str  # sub-module of a layer: self-attention query projection (LoRA site, input hook)
    value: str  # sub-module of a layer: self-attention value projection (LoRA site)


_BERT_LIKE = dict(
    layers_path="encoder.layer",
    layers_attr="num_hidden_layers",
    hidden_attr="hidden_size",
    adapter_site="output.adapters",
    adapter_input="output.LayerNorm",
    query="attention.self.query",
    value="attention.self.value",
)

ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture(model_types=("bert",), **_BERT_LIKE),
    Architecture(model_types=("xlm-roberta", "roberta"), **_BERT_LIKE),
    Architecture(model_types=("electra",), **_BERT_LIKE),
    Architecture(model_types=("deberta-v2",), **{**_BERT_LIKE, "query": "attention.self.query_proj",
                                                 "value": "attention.self.value_proj"}),
    Architecture(
        model_types=("distilbert",),
        layers_path="transformer.layer",
        layers_attr="n_layers",
        hidden_attr="dim",
        adapter_site="output_adapters.adapters",
        adapter_input="output_layer_norm",
        query="attention.q_lin",
        value="attention.v_lin",
    ),
)

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(t for a in ARCHITECTURES for t in a.model_types)


def architecture(model_type: str, source: str = "the model") -> Architecture:
    for arch in ARCHITECTURES:
        if model_type in arch.model_types:
            return arch
    raise TransmodError(
        f"{source}: unsupported architecture {model_type!r}; supported model types are "
        f"{', '.join(SUPPORTED_MODEL_TYPES)}"
    )


@dataclass(frozen=True)
class ModelShape:
    """What transfer needs to know about a model: read from its config alone, no weights."""

    name: str
    model_type: str
    num_layers: int
    hidden_size: int
    model_class: str

    @property
    def arch(self) -> Architecture:
        return architecture(self.model_type, self.name)


BASE_CLASSES = {"bert": "BertModel", "xlm-roberta": "XLMRobertaModel", "roberta": "RobertaModel",
                "distilbert": "DistilBertModel", "electra": "ElectraModel", "deberta-v2": "DebertaV2Model"}


def model_shape(config: Any, name: str) -> ModelShape:
    """Shape from a transformers config object or the dict of a config.json."""
    values = config if isinstance(config, dict) else config.to_dict()
    arch = architecture(values.get("model_type", "?"), name)
    return ModelShape(
        name=name,
        model_type=values["model_type"],
        num_layers=int(values[arch.layers_attr]),
        hidden_size=int(values[arch.hidden_attr]),
        model_class=BASE_CLASSES[values["model_type"]],
    )


def load_model_shape(model: str) -> ModelShape:
    """Shape of a hub id or local model folder, from its config.json alone (no transformers import)."""
    from transmod.hub import load_error, local_files_only, looks_local

    local = Path(model).expanduser() / "config.json"
    try:
        if looks_local(model):
            if not local.is_file():
                raise FileNotFoundError(f"no {local}")
            path = local
        else:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(model, "config.json", local_files_only=local_files_only(model)))
    except Exception as exc:  # hub errors, a missing file
        raise load_error(model, "model config", exc) from None
    config = read_json(path, "restore the model's config.json")
    if not isinstance(config, dict):
        raise TransmodError(f"{path}: not a model config (a JSON object); restore the model's config.json")
    try:
        return model_shape(config, model)
    except (KeyError, TypeError, ValueError) as exc:
        raise TransmodError(f"{path}: the model config lacks or garbles {exc}; restore the model's config.json") from None
