"""One exception type for every user-facing failure, so the CLI and rules can print one line; and the
readers of the file formats users hand in (JSON, safetensors, legacy .bin), which fail that way."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


class TransmodError(Exception):
    """Bad input: the message names the file or option and says what to do."""


def read_json(path: str | os.PathLike, fix: str) -> Any:
    """A JSON file's content; a missing, unreadable or invalid file is one line naming it and `fix`."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise TransmodError(f"{path}: not readable as JSON ({reason}); {fix}") from None


def load_safetensors(path: str | os.PathLike, fix: str) -> dict[str, np.ndarray]:
    """A safetensors file's tensors as numpy arrays; a truncated or foreign file is one line naming it."""
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError, OSError or ValueError
        raise TransmodError(f"{path}: not a readable safetensors file ({str(exc).splitlines()[0]}); {fix}") from None


def load_torch_bin(path: str | os.PathLike, fix: str) -> dict[str, np.ndarray]:
    """Legacy .bin weights: plain tensors only (weights_only=True); a pickle holding code is refused."""
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise TransmodError(f"{path}: refused: the file holds pickled Python objects, not plain tensors, and "
                            f"transmod never runs pickled code; {fix}") from None
    except Exception as exc:
        raise TransmodError(f"{path}: not a readable PyTorch weights file ({str(exc).splitlines()[0]}); {fix}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TransmodError(f"{path}: not a dict of tensors; {fix}")
    return {k: v.float().numpy() for k, v in state.items()}
