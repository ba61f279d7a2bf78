"""LoRAs in Hugging Face `peft`'s folder format: read one as the teacher module, write a transferred one.

A `peft` LoRA folder holds adapter_config.json (`peft_type: LORA`, `r`, `lora_alpha`, `target_modules`)
and adapter_model.safetensors with keys such as
`base_model.model.encoder.layer.0.attention.self.query.lora_A.weight` (a head model adds its base
prefix, e.g. `bert.`). Its scaling alpha / r is adapters' scaling, so the weights map one to one onto
transmod's (layer, site, lora_A | lora_B) representation. No `peft` import is needed for either direction.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from transmod.atomic import MARK_FILE, new_output
from transmod.errors import TransmodError, load_safetensors, load_torch_bin, read_json
from transmod.modules.architectures import ARCHITECTURES, ModelShape
from transmod.modules.kind import check_tensor, config_number
from transmod.modules.lora import LoRA
from transmod.modules.module import CONFIG_NAME, MODULE_KIND, Module

PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_BIN = "adapter_model.bin"
HEADLESS_TASK_TYPES = ("CAUSAL_LM", "FEATURE_EXTRACTION")  # peft task types whose model adds no trained head
PROVENANCE = MARK_FILE  # peft refuses unknown config keys quietly: provenance lives in the output's mark
DECODER_TYPES = tuple(t for a in ARCHITECTURES if a.decoder for t in a.model_types)
BASE_PREFIX = {"bert": "bert", "bert-generation": "bert", "roberta": "roberta", "xlm-roberta": "roberta",
               "distilbert": "distilbert", "electra": "electra", "deberta-v2": "deberta", "albert": "albert",
               **{t: "model" for t in DECODER_TYPES}}
HEAD = "peft_head"  # marks, in Module.peft_config, a LoRA saved from a head model (keys carry the base prefix)


def _leaf(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def _check_peft_config(config: dict, path: Path) -> tuple[int, float, float]:
    """Refuse what transmod does not move; the LoRA's r, lora_alpha and lora_dropout, each checked for its range."""
    if config.get("peft_type") != "LORA":
        raise TransmodError(f"{path}/{CONFIG_NAME}: peft_type {config.get('peft_type')!r} is not LORA; transmod moves peft LoRAs only")
    bad = [k for k in ("use_dora", "fan_in_fan_out", "lora_bias", "rank_pattern", "alpha_pattern", "layer_replication",
                       "target_parameters", "use_qalora") if config.get(k)]
    if config.get("bias", "none") != "none":
        bad.append(f"bias={config['bias']}")
    if bad:
        raise TransmodError(f"{path}/{CONFIG_NAME}: unsupported peft LoRA options {', '.join(bad)}; transmod supports plain LoRA")
    return tuple(config_number(config, key, path / CONFIG_NAME, valid, default=default) for key, valid, default
                 in (("r", "count", None), ("lora_alpha", "positive", None), ("lora_dropout", "fraction", 0.0)))


def _check_decoder_targets(config: dict, path: Path, teacher: ModelShape) -> None:
    """A decoder LoRA may sit on the seven projections only: embeddings, the LM head or a fully trained
    module (modules_to_save) are part of the model's function that transmod cannot move."""
    leaves = list(teacher.arch.lora_paths)
    targets = config.get("target_modules")
    bad = sorted(set(targets) - set(leaves)) if isinstance(targets, list) else []
    bad += sorted(config.get("modules_to_save") or [])
    if bad:
        raise TransmodError(f"{path}/{CONFIG_NAME}: LoRA on {', '.join(bad)} cannot be moved; transmod moves LoRAs on "
                            f"{', '.join(leaves)} of a {teacher.model_type} model (train the LoRA on those only)")


def _check_targets(config: dict, path: Path, leaves: set[str], modules: set[str]) -> None:
    """`target_modules` must name exactly the modules that hold weights (peft would not load them otherwise)."""
    targets = config.get("target_modules")
    if isinstance(targets, str):  # peft: a regex that must match a module's full name
        matches = all(re.fullmatch(targets, m) for m in modules)
    elif isinstance(targets, list):
        matches = set(targets) == leaves
    else:
        matches = False
    if not matches:
        raise TransmodError(f"{path}/{CONFIG_NAME}: target_modules {targets!r} do not match the modules that hold "
                            f"LoRA weights ({', '.join(sorted(leaves))}); save the LoRA again with peft's save_pretrained")


def _check_widths(weights: dict[tuple[int, str, str], np.ndarray], path: Path, teacher: ModelShape) -> None:
    """Each A must read, and each B write, as many dimensions as its site's spaces have in the teacher."""
    for (l, site, param), t in weights.items():
        axis = 1 if param == "lora_A" else 0
        want = teacher.width(LoRA().space(site, "in" if param == "lora_A" else "out", False))
        if not teacher.arch.decoder:
            want = teacher.hidden_size
        if t.shape[axis] != want:
            raise TransmodError(
                f"{path}: {param} of {site} in layer {l} is {t.shape[axis]} wide but the teacher {teacher.name} has "
                f"{want} dimensions there; give the teacher the module was trained on"
            )


def _adapters_lora_config(r: int, alpha: float, sites: list[str], dropout: float) -> dict:
    """The `config` section adapters 1.3 writes for a LoRAConfig with these values."""
    return {
        "alpha": alpha, "architecture": "lora", "attn_matrices": [{"query": "q", "value": "v"}[s] for s in sites
                                                                  if s in ("query", "value")],
        "composition_mode": "add", "dropout": dropout, "dtype": None, "init_weights": "lora", "init_weights_seed": None,
        "intermediate_lora": False, "leave_out": [], "output_lora": False, "r": r, "selfattn_lora": True,
        "use_dora": False, "use_gating": False, "vera_b": None, "vera_d": None,
    }


def _peft_state(path: Path) -> tuple[dict[str, np.ndarray], Path]:
    """The tensors of a peft LoRA's weights file (safetensors, or a legacy .bin of plain tensors), and that file."""
    fix = "save the LoRA again with peft's save_pretrained"
    if (path / PEFT_WEIGHTS).is_file():
        return load_safetensors(path / PEFT_WEIGHTS, fix), path / PEFT_WEIGHTS
    if (path / PEFT_BIN).is_file():
        return load_torch_bin(path / PEFT_BIN, fix), path / PEFT_BIN
    raise TransmodError(f"{path}: no weights ({PEFT_WEIGHTS} or {PEFT_BIN}); save the LoRA with peft's save_pretrained")


def read_peft_module(path: str | Path, config: dict, teacher: ModelShape) -> Module:
    """Read a LoRA saved by `peft` into transmod's representation (the head's weights are left behind)."""
    path = Path(path)
    r, alpha, dropout = _check_peft_config(config, path)
    state, weights_file = _peft_state(path)
    arch = teacher.arch
    if arch.decoder:
        _check_decoder_targets(config, path, teacher)
    paths = arch.lora_paths
    sites = {_leaf(p): site for site, p in paths.items()}
    pattern = re.compile(
        rf"^base_model\.model\.(?:(\w+)\.)?{re.escape(arch.layers_path)}\.(\d+)\."
        rf"({'|'.join(map(re.escape, paths.values()))})\.(lora_A|lora_B)(?:\.[\w-]+)?\.weight$"
    )
    head = set(config.get("modules_to_save") or [])
    weights: dict[tuple[int, str, str], np.ndarray] = {}
    prefixes, skipped = set(), []
    for key, tensor in state.items():
        match = pattern.match(key)
        if match is None:
            if ".modules_to_save." in key or any(f".{m}." in key for m in head):
                skipped.append(key)
                continue
            raise TransmodError(f"{path}: unexpected weight {key!r} for a {teacher.model_type} peft LoRA; transmod moves "
                                f"LoRAs on {', '.join(sites)} only")
        prefixes.add(match.group(1))
        check_tensor(tensor, 2, weights_file, key)
        weights[(int(match.group(2)), sites[_leaf(match.group(3))], match.group(4))] = tensor
    if skipped:
        warnings.warn(f"{path}: {len(skipped)} head weight(s) not transferred (the student's head is trained fresh)", stacklevel=2)
    if not weights:
        raise TransmodError(f"{path}: the weights file holds no LoRA weights for {', '.join(sorted(sites))}")
    if len(prefixes) > 1 or prefixes - {None, BASE_PREFIX[teacher.model_type]}:
        raise TransmodError(f"{path}: LoRA keys under {sorted(map(str, prefixes))}, not the {teacher.model_type} model; give the teacher it was trained on")
    too_deep = sorted({l for l, _, _ in weights if l >= teacher.module_layers})
    if too_deep:
        raise TransmodError(
            f"{path}: the module has layers {too_deep} but the teacher {teacher.name} has only "
            f"{teacher.module_layers} layers; give the teacher the module was trained on"
        )
    _check_widths(weights, path, teacher)
    _check_targets(config, path, {_leaf(m.group(3)) for m in map(pattern.match, state) if m},
                   {key.removeprefix("base_model.model.").rsplit(".lora_", 1)[0] for key in state if pattern.match(key)})
    ranks = {t.shape[0 if p == "lora_A" else 1] for (_, _, p), t in weights.items()}
    if ranks != {r}:
        raise TransmodError(f"{path}: the LoRA weights have rank {sorted(ranks)} but {CONFIG_NAME} says r = {r}; "
                            "save the LoRA again with peft's save_pretrained")
    if config.get("use_rslora"):
        alpha *= float(np.sqrt(r))  # rsLoRA scales by alpha / sqrt(r) = (alpha sqrt(r)) / r
    present = sorted({s for _, s, _ in weights}, key=LoRA.sites.index)
    internal = {
        "config": _adapters_lora_config(r, alpha, present, float(dropout)),
        "hidden_size": teacher.hidden_size, "model_class": teacher.model_class, "model_name": teacher.name,
        "model_type": teacher.model_type, "name": "default", "version": "adapters.1.3.0",
    }
    if (path / PROVENANCE).is_file():  # a LoRA that transmod wrote: keep where it came from
        internal["transmod"] = read_json(path / PROVENANCE, f"remove {PROVENANCE} or write the LoRA again")
    peft_config = dict(config, **{HEAD: prefixes != {None}})
    return Module(path, internal, weights, peft_config)


def peft_config_for(module: Module, student: ModelShape, layers: set[int]) -> dict:
    """The student's adapter_config.json: the teacher's peft config (or one made from adapters'), renamed.

    A task type that adds a head (SEQ_CLS, TOKEN_CLS, ...) and `modules_to_save` are cleared: the head is trained
    fresh (docs/method.md, section 6), and peft would otherwise look for the head's weights when loading; give them
    again to train the student. A task type that adds none (CAUSAL_LM: the LM head is the base model's) is kept, so
    that `PeftModel.from_pretrained` returns the same class (PeftModelForCausalLM) for the student as for the teacher.
    """
    arch = student.arch
    sites = sorted({s for _, s, _ in module.weights}, key=LoRA.sites.index)
    if module.peft_config is not None:
        config = {k: v for k, v in module.peft_config.items() if k != HEAD}
    else:
        cfg = module.config["config"]
        config = {"peft_type": "LORA", "r": int(cfg["r"]), "lora_alpha": cfg["alpha"],
                  "lora_dropout": float(cfg.get("dropout") or 0.0), "bias": "none", "fan_in_fan_out": False,
                  "use_rslora": False, "use_dora": False, "init_lora_weights": True, "modules_to_save": None,
                  "rank_pattern": {}, "alpha_pattern": {}, "task_type": None}
    leaves = {site: _leaf(p) for site, p in arch.lora_paths.items()}
    all_layers = layers == set(range(student.module_layers))
    config.update(
        base_model_name_or_path=student.name, target_modules=[leaves[s] for s in sites], inference_mode=True,
        layers_to_transform=None if all_layers else sorted(layers),
        layers_pattern=None if all_layers else _leaf(arch.layers_path),
        auto_mapping=None, modules_to_save=None,  # the head is not transferred: no head to restore
        task_type=config.get("task_type") if config.get("task_type") in HEADLESS_TASK_TYPES else None,
    )
    return config


def save_peft_module(
    weights: dict[tuple[int, str, str], np.ndarray], module: Module, student: ModelShape, out: str | Path, provenance: dict,
    *, overwrite: bool = False, inputs: Sequence[str | Path] = (),
) -> None:
    """Write a transferred LoRA for `PeftModel.from_pretrained(student_model, out)`.

    Keys name the base model's modules (`base_model.model.encoder.layer...`); a LoRA read from a head
    model's peft folder keeps that form (`base_model.model.<base prefix>.encoder.layer...`).
    """
    from safetensors.numpy import save_file

    arch = student.arch
    paths = arch.lora_paths
    prefix = "base_model.model." + (f"{BASE_PREFIX[student.model_type]}." if (module.peft_config or {}).get(HEAD) else "")
    state = {f"{prefix}{arch.layers_path}.{l}.{paths[site]}.{param}.weight": np.ascontiguousarray(t)
             for (l, site, param), t in weights.items()}
    config = peft_config_for(module, student, {l for l, _, _ in weights})
    with new_output(out, MODULE_KIND, inputs=inputs, overwrite=overwrite, is_dir=True) as tmp:
        save_file(state, str(tmp / PEFT_WEIGHTS))
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True))
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=2, sort_keys=True))
