"""Where modules live in each supported architecture, as the `adapters` library 1.3 (encoders) and
transformers 4.57 (decoder LLMs) name them.

One table is the single source of truth for hook points (sampling) and weight names (transfer),
so supporting a new family is one entry here. A decoder LLM (`decoder=True`) carries LoRAs on any of
`DECODER_SITES`; each projection reads and writes one of three spaces (residual stream, attention
heads, MLP neurons), see docs/method.md, section 3. Llama and Mistral also carry `adapters`' bottleneck
output adapter, which reads and writes the un-normed residual stream at the layer's output.
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
    adapter_site: str  # sub-module of a layer holding the output bottleneck adapter ("": `adapters` puts none there)
    adapter_input: str  # sub-module of a layer whose forward output the output adapter reads ("": the layer itself)
    query: str  # sub-module of a layer: self-attention query projection (LoRA site, input hook)
    value: str  # sub-module of a layer: self-attention value projection (LoRA site)
    decoder: bool = False  # a decoder LLM: LoRA sites are DECODER_SITES
    shared: bool = False  # one layer's weights serve the whole depth (ALBERT): its one module too, see `ModelShape`

    @property
    def has_adapters(self) -> bool:
        """Whether the `adapters` library places a bottleneck adapter in this family's layers."""
        return bool(self.adapter_site)

    @property
    def lora_paths(self) -> dict[str, str]:
        """LoRA site -> the sub-module of a layer that it adapts."""
        if self.decoder:
            return {site: path for site, (path, _, _) in DECODER_SITES.items()}
        return {"query": self.query, "value": self.value}


# Decoder LLM projections: site (peft's target name) -> (sub-module of a layer, space it reads, space it writes).
# Spaces: `h` residual stream as attention reads it (after input_layernorm), `f` residual stream as the MLP
# reads it (after the post-attention norm), `a` query heads (the input of o_proj), `kv` key/value heads,
# `m` MLP neurons (the input of down_proj). o_proj writes the residual that the MLP's norm reads next,
# down_proj the one the next layer's attention norm reads.
DECODER_SITES: dict[str, tuple[str, str, str]] = {
    "q_proj": ("self_attn.q_proj", "h", "a"),
    "k_proj": ("self_attn.k_proj", "h", "kv"),
    "v_proj": ("self_attn.v_proj", "h", "kv"),
    "o_proj": ("self_attn.o_proj", "a", "f"),
    "gate_proj": ("mlp.gate_proj", "f", "m"),
    "up_proj": ("mlp.up_proj", "f", "m"),
    "down_proj": ("mlp.down_proj", "m", "h"),
}
HEAD_SPACES = ("a", "kv")  # aligned as whole heads (transmod.align.heads), never dimension by dimension


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
    Architecture(model_types=("bert-generation",), **_BERT_LIKE),  # an encoder without heads: transfer, not training
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
    # ALBERT runs its one layer (one layer group of one layer; `model_shape` refuses others) at every depth, and
    # `adapters` gives it one module, read at each application: depth `l` of a sample file is application `l`.
    Architecture(model_types=("albert",), layers_path="encoder.albert_layer_groups.0.albert_layers",
                 layers_attr="num_hidden_layers", hidden_attr="hidden_size", adapter_site="output_adapters.adapters",
                 adapter_input="full_layer_layer_norm", query="attention.query", value="attention.value", shared=True),
    # Decoders: `adapters` 1.3 adds the output adapter after the MLP of Llama and Mistral only, where it reads
    # the layer's output (the un-normed residual stream, MLP output + residual; "" hooks the layer itself) and
    # adds its change to it. The other families carry peft LoRAs only.
    *(Architecture(model_types=(model_type,), layers_path="layers", layers_attr="num_hidden_layers",
                   hidden_attr="hidden_size", adapter_site="output_adapters.adapters" if bottleneck else "",
                   adapter_input="", query="self_attn.q_proj", value="self_attn.v_proj", decoder=True)
      for model_type, bottleneck in (("llama", True), ("mistral", True), ("qwen2", False), ("qwen3", False),
                                     ("gemma2", False), ("gemma3_text", False))),
)

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(t for a in ARCHITECTURES for t in a.model_types)
ADAPTER_MODEL_TYPES: tuple[str, ...] = tuple(t for a in ARCHITECTURES if a.has_adapters for t in a.model_types)


# Encoder families the `adapters` library supports that transmod refuses, and why.
WHY_UNSUPPORTED = {
    "deberta": "DeBERTa v1 fuses query, key and value into one in_proj, interleaved per head, and adapters merges "
               "its LoRA into that projection; DeBERTa-v2/v3 (deberta-v2) is supported",
    "xmod": "X-MOD routes every token through a language's own built-in adapter, so a layer's input depends on the "
            "language, which transmod does not sample by",
}


def architecture(model_type: str, source: str = "the model") -> Architecture:
    for arch in ARCHITECTURES:
        if model_type in arch.model_types:
            return arch
    why = f" ({WHY_UNSUPPORTED[model_type]})" if model_type in WHY_UNSUPPORTED else ""
    raise TransmodError(
        f"{source}: unsupported architecture {model_type!r}{why}; supported model types are "
        f"{', '.join(SUPPORTED_MODEL_TYPES)}"
    )


@dataclass(frozen=True)
class ModelShape:
    """What transfer needs to know about a model: read from its config alone, no weights.

    `num_layers` is the depth: the states sampled, and what layer maps pair. A model whose one layer serves
    the whole depth (`Architecture.shared`, ALBERT) holds one module, layer 0, read at every depth
    (`module_layers`, `module_layer`).
    """

    name: str
    model_type: str
    num_layers: int
    hidden_size: int
    model_class: str
    num_heads: int = 0  # decoders only (0 for encoders): query heads, key/value heads, head size, MLP width
    num_kv_heads: int = 0
    head_dim: int = 0
    intermediate_size: int = 0

    @property
    def arch(self) -> Architecture:
        return architecture(self.model_type, self.name)

    @property
    def module_layers(self) -> int:
        """How many layers hold modules: the depth, or 1 where one layer serves it all."""
        return module_layers(self.describe())

    def module_layer(self, depth: int) -> int:
        """The layer whose module acts at `depth`."""
        return 0 if self.arch.shared else depth

    def width(self, space: str) -> int:
        """How many dimensions a space has (`DECODER_SITES`' spaces; every encoder space is the hidden size)."""
        return space_width(self.describe(), space)

    def widths(self) -> dict:
        """The sizes that must agree for a module to move without an alignment."""
        return {k: v for k, v in self.describe().items() if k not in ("model", "model_type", "num_layers")}

    def describe(self) -> dict:
        """The shape as alignment files record it (decoders add their head and MLP sizes)."""
        out = {"model": self.name, "model_type": self.model_type, "num_layers": self.num_layers,
               "hidden_size": self.hidden_size}
        if self.num_heads:
            out.update({k: getattr(self, k) for k in DECODER_SIZES})
        return out


DECODER_SIZES = ("num_heads", "num_kv_heads", "head_dim", "intermediate_size")  # recorded beside the hidden size


def module_depths(shape: dict) -> list[list[int]]:
    """The depths at which each module layer of a model (`ModelShape.describe`) acts: its own, or every depth
    for a layer that serves them all (ALBERT), whose one module is then fitted on all their states, pooled."""
    depth = int(shape["num_layers"])
    return [list(range(depth))] if architecture(shape["model_type"], shape.get("model", "the model")).shared \
        else [[l] for l in range(depth)]


def module_layers(shape: dict) -> int:
    """How many layers of a model described by `ModelShape.describe` hold modules (1 where one serves the depth)."""
    return len(module_depths(shape))


def space_width(shape: dict, space: str) -> int:
    """The width of a space of a model described by `ModelShape.describe` (or a sample file's metadata)."""
    if space in ("a", "kv", "m"):
        heads = shape["num_heads"] if space == "a" else shape["num_kv_heads"]
        return int(shape["intermediate_size"] if space == "m" else heads * shape["head_dim"])
    return int(shape["hidden_size"])


BASE_CLASSES = {"bert": "BertModel", "bert-generation": "BertGenerationEncoder", "xlm-roberta": "XLMRobertaModel",
                "roberta": "RobertaModel", "distilbert": "DistilBertModel", "albert": "AlbertModel",
                "electra": "ElectraModel", "deberta-v2": "DebertaV2Model", "llama": "LlamaModel",
                "mistral": "MistralModel", "qwen2": "Qwen2Model", "qwen3": "Qwen3Model", "gemma2": "Gemma2Model",
                "gemma3_text": "Gemma3TextModel"}


def model_shape(config: Any, name: str) -> ModelShape:
    """Shape from a transformers config object or the dict of a config.json."""
    values = config if isinstance(config, dict) else config.to_dict()
    arch = architecture(values.get("model_type", "?"), name)
    hidden = int(values[arch.hidden_attr])
    groups, inner = (int(values.get(key, 1)) for key in ("num_hidden_groups", "inner_group_num"))
    if arch.shared and (groups, inner) != (1, 1):
        raise TransmodError(f"{name}: num_hidden_groups {groups} and inner_group_num {inner}: transmod moves ALBERT "
                            "modules with one layer group of one layer (as every released ALBERT has); set both to 1")
    extra = {}
    if arch.decoder:
        heads = int(values["num_attention_heads"])
        extra = dict(num_heads=heads, num_kv_heads=int(values.get("num_key_value_heads") or heads),
                     head_dim=int(values.get("head_dim") or hidden // heads),
                     intermediate_size=int(values["intermediate_size"]))
    return ModelShape(
        name=name,
        model_type=values["model_type"],
        num_layers=int(values[arch.layers_attr]),
        hidden_size=hidden,
        model_class=BASE_CLASSES[values["model_type"]],
        **extra,
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
