"""The model a run trains: a frozen encoder with a fresh or a given (transferred) module and a fresh head."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from transmod.errors import TransmodError
from transmod.hub import local_files_only
from transmod.modules.adapters_format import SAFE_WEIGHTS_NAME
from transmod.modules.kinds import get_kind, kind_of
from transmod.modules.module import CONFIG_NAME
from transmod.train.config import TrainConfig
from transmod.train.tasks import Task, get_task

ADAPTER_NAME = "task"  # the module's name inside the model; saved modules are loaded under it too
_HEAD_SEED_OFFSET = 7919  # the head's init stream: independent of how the module was initialised


@contextmanager
def quiet_transformers():
    """Silence expected warnings: from_pretrained's 'newly initialized head', adapters' activation notes."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    adapters_logger = logging.getLogger("adapters")
    adapters_level = adapters_logger.level
    hf_logging.set_verbosity_error()
    adapters_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        adapters_logger.setLevel(adapters_level)


def check_peft(peft: str) -> None:
    get_kind(peft, "peft")


def _module_config(init_module: Path) -> dict:
    if not init_module.is_dir():
        raise TransmodError(f"{init_module}: no such module folder; give a folder written by save_adapter")
    if not (init_module / CONFIG_NAME).is_file():
        raise TransmodError(f"{init_module}: no {CONFIG_NAME}; give a folder written by adapters' save_adapter")
    if not (init_module / SAFE_WEIGHTS_NAME).is_file():
        raise TransmodError(
            f"{init_module}: no {SAFE_WEIGHTS_NAME}; transmod loads module weights as safetensors only "
            "(save with use_safetensors=True)"
        )
    try:
        return json.loads((init_module / CONFIG_NAME).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TransmodError(f"{init_module / CONFIG_NAME}: not valid JSON ({exc}); save the module again") from None


def head_parameter_names(model: torch.nn.Module) -> list[str]:
    """Parameters outside the base model: the classification head (classifier, DistilBERT's pre_classifier)."""
    prefix = model.base_model_prefix + "."
    return [n for n, _ in model.named_parameters() if not n.startswith(prefix)]


def _check_mismatched(model: torch.nn.Module, mismatched: Sequence, source: str) -> None:
    """Only the head may be re-initialised for a different shape; a base weight that does not fit the
    model's config means a damaged or mislabelled checkpoint, and training on it would be silently wrong."""
    head = set(head_parameter_names(model))
    base = [k if isinstance(k, str) else k[0] for k in mismatched]
    base = [k for k in base if k not in head]
    if base:
        raise TransmodError(f"{source}: the weight {base[0]} does not have the shape its config.json gives"
                            f"{f' (and {len(base) - 1} more)' if len(base) > 1 else ''}; restore the model's files")


def _pretrained(source: str, task: Task, label_names: list[str]) -> torch.nn.Module:
    """The pre-trained model with a head of the task's kind for `label_names`: one error line for any load failure."""
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    model_cls = AutoModelForTokenClassification if task.is_token else AutoModelForSequenceClassification
    try:
        config = AutoConfig.from_pretrained(
            source, trust_remote_code=False, num_labels=len(label_names), local_files_only=local_files_only(source),
            id2label=dict(enumerate(label_names)), label2id={n: i for i, n in enumerate(label_names)},
        )
        if type(config) not in model_cls._model_mapping:  # e.g. bert-generation: an encoder without task heads
            raise TransmodError(
                f"{source}: transformers has no {task.kind} model for {config.model_type}, so transmod "
                f"cannot train on it; train its module elsewhere and move it with `transmod transfer`")
        with quiet_transformers():
            # Mismatched sizes are allowed for a saved head of another label set; `_check_mismatched` refuses the rest.
            model, info = model_cls.from_pretrained(
                source, config=config, trust_remote_code=False, ignore_mismatched_sizes=True, dtype=torch.float32,
                local_files_only=local_files_only(source), output_loading_info=True,
            )
    except (OSError, ValueError) as exc:
        raise TransmodError(
            f"cannot load the model {source!r}: give a local model folder (config.json + weights) or a hub id "
            f"reachable from here ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None
    _check_mismatched(model, info.get("mismatched_keys", []), source)
    return model


def build_model(
    model_path: str | os.PathLike,
    task: Task | str,
    num_labels: int,
    peft: str,
    cfg: TrainConfig,
    init_module: str | os.PathLike | None = None,
    labels: Sequence[str] | None = None,
) -> torch.nn.Module:
    """A frozen pre-trained model with one module named 'task' and a fresh trainable head; the module
    trains too unless `cfg.freeze_module`.

    The module is new (its kind's options from `cfg.modules`: adapter bottleneck; LoRA r/alpha on query and
    value) or loaded from `init_module` (adapters folder layout, safetensors), which must fill every
    module weight with nothing left over. The head is re-initialised from the seed on its own random
    stream, so a default and a transferred run of one seed start from the same head.
    """
    check_peft(peft)
    import adapters

    source = str(model_path)
    label_names = list(labels) if labels is not None else [str(i) for i in range(num_labels)]
    if len(label_names) != num_labels:
        raise TransmodError(f"{len(label_names)} label names given for {num_labels} labels; give one name per label")
    task = get_task(task)
    torch.manual_seed(cfg.seed)
    model = _pretrained(source, task, label_names)
    adapters.init(model)

    if init_module is None:
        hidden = int(getattr(model.config, "hidden_size", None) or model.config.dim)
        module_cfg = get_kind(peft, "peft").new_config(hidden, cfg.module_options(peft))
        with quiet_transformers():
            model.add_adapter(ADAPTER_NAME, config=module_cfg, set_active=True)
    else:
        _load_module(model, Path(init_module), peft)
    with quiet_transformers():
        model.train_adapter(ADAPTER_NAME)
    head = set(head_parameter_names(model))
    if not head:
        raise TransmodError(f"{source}: the model has no classification head outside its base model")
    _set_trainable(model, head, cfg.freeze_module)
    _init_head(model, head, cfg.seed)
    return model


def _set_trainable(model: torch.nn.Module, head: set[str], freeze_module: bool) -> None:
    """Only the head and (unless frozen) the module learn: belt and braces over `train_adapter`'s own freezing."""
    for name, param in model.named_parameters():
        if name in head:
            param.requires_grad_(True)
        elif param.requires_grad and (freeze_module or f".{ADAPTER_NAME}." not in name):
            param.requires_grad_(False)


def _init_head(model: torch.nn.Module, head: set[str], seed: int) -> None:
    """Re-initialise the head on its own random stream, so that how the module began does not change it."""
    head_modules = {n.rsplit(".", 1)[0] for n in head}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + _HEAD_SEED_OFFSET)
        for name in sorted(head_modules):
            model._init_weights(model.get_submodule(name))


def _load_module(model: torch.nn.Module, init_module: Path, peft: str) -> None:
    config = _module_config(init_module)
    kind = kind_of(config.get("config"))
    if kind is None or kind.name != peft:
        raise TransmodError(
            f"{init_module / CONFIG_NAME}: holds a {kind.name if kind else 'non adapter/LoRA'} module, but peft is {peft!r}; "
            "give a module of the run's peft type"
        )
    info: dict[str, list[str]] = {}
    try:
        with quiet_transformers():
            model.load_adapter(str(init_module), load_as=ADAPTER_NAME, use_safetensors=True, set_active=True,
                               loading_info=info)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise TransmodError(
            f"{init_module}: cannot load the module into {model.config.model_type} ({str(exc).splitlines()[0]}); "
            "give a module saved for this model's architecture and width"
        ) from None
    missing, unexpected = info.get("missing_keys", []), info.get("unexpected_keys", [])
    if missing or unexpected:
        detail = "; ".join(
            f"{what} {len(keys)} keys (e.g. {keys[0]})" for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys
        )
        raise TransmodError(
            f"{init_module}: the module does not match the model ({detail}); give a module transferred to this model"
        )


def load_tokenizer(model_path: str | os.PathLike, words: bool = False) -> Any:
    """The model's tokenizer; `words`: for pre-split words (token tasks), which needs a fast tokenizer
    and, for byte-level BPE (RoBERTa, GPT-2 style), a space before each word as in running text."""
    from transformers import AutoTokenizer

    def load(**kwargs: Any) -> Any:
        try:
            return AutoTokenizer.from_pretrained(str(model_path), trust_remote_code=False,
                                                 local_files_only=local_files_only(str(model_path)), **kwargs)
        except (OSError, ValueError) as exc:
            raise TransmodError(
                f"cannot load the tokenizer of {str(model_path)!r}: give a model folder with its tokenizer files or a "
                f"reachable hub id ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
            ) from None

    tokenizer = load()
    if words and not getattr(tokenizer, "is_fast", False):
        raise TransmodError(f"{model_path}: a token-classification task needs a fast tokenizer (tokenizer.json) to "
                            "align words and sub-tokens")
    if words and getattr(tokenizer, "add_prefix_space", None) is False:
        tokenizer = load(add_prefix_space=True)
    return tokenizer
