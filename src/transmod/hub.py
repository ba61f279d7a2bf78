"""Hub ids and local folders: which a name is, and whether the hub can be asked at all.

Without a route to the hub (or with HF_HUB_OFFLINE set), loaders read only the local cache, so a
hub id that is not cached fails at once with one line instead of after a minute of retries.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from transmod.errors import TransmodError


def looks_local(name: str) -> bool:
    """A path the user meant as a folder (hub ids are `owner/name`, never absolute or dotted)."""
    return Path(name).expanduser().exists() or name.startswith(("/", "./", "../", "~")) or name.count("/") > 1


def is_hub_id(name: str) -> bool:
    """Whether `name` has the form of a hub repository id (`name` or `owner/name`), by huggingface_hub's
    own rule: letters, digits, `-`, `_` and `.`, never `--` or `..`, so that `slug` keeps hub ids apart."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def slug(name: str) -> str:
    """A hub id or model folder as one path component (`xlm-roberta-large`, `resources--demo--models--x`):
    results keyed by model, not by pair, are shared by every pair that uses it."""
    return name.strip("/").replace("/", "--")


def _offline_env() -> bool:
    return any(os.environ.get(k, "").upper() in {"1", "ON", "YES", "TRUE"} for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's endpoint answers a TCP connect (False at once in offline mode or without DNS)."""
    if _offline_env():
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


def local_files_only(name: str) -> bool:
    """Load `name` from local files only: a local folder, or a hub id while the hub is out of reach."""
    return looks_local(name) or not hub_reachable()


def load_error(name: str, what: str, exc: BaseException) -> TransmodError:
    """One line for a model, tokenizer or config that could not be loaded, saying what to give instead."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if looks_local(name):
        hint = "give a local model folder with config.json, tokenizer and safetensors weights"
    elif not hub_reachable():
        hint = ("the hub is not reachable from here (or HF_HUB_OFFLINE is set) and it is not in the local cache: "
                "give a local folder, or fetch it where the network is")
    else:
        hint = "check the hub id"
    return TransmodError(f"cannot load the {what} of {name!r}: {hint} ({detail})")


def offline_unless_reachable() -> None:
    """Switch the hub libraries to offline mode (their cache only) when the hub cannot be reached;
    for loaders that take no `local_files_only`, such as `datasets.load_dataset`."""
    if hub_reachable():
        return
    os.environ["HF_HUB_OFFLINE"] = "1"
    import sys

    for module, attribute in (("huggingface_hub.constants", "HF_HUB_OFFLINE"), ("datasets.config", "HF_HUB_OFFLINE"),
                              ("datasets.config", "HF_DATASETS_OFFLINE")):
        if module in sys.modules:
            setattr(sys.modules[module], attribute, True)
