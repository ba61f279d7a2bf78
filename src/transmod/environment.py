"""transmod's own environment variables (TRANSMOD_*), read in one place: a value that is not one of the
accepted spellings is refused naming the variable, never taken for "on" or "off" by accident."""

from __future__ import annotations

import os

from transmod.errors import TransmodError

FP32 = "TRANSMOD_FP32"  # a switch: fp32 everywhere (`transmod.train.runtime.Device`)
THREADS = "TRANSMOD_THREADS"  # a count: CPU threads of a job (`transmod.train.runtime.configure_threads`)

_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


def _value(name: str) -> str:
    """The variable's value without surrounding blanks; "" when unset."""
    return os.environ.get(name, "").strip()


def switch(name: str) -> bool:
    """An on/off variable: 1/true/yes/on or 0/false/no/off in any case; unset or empty is off."""
    value = _value(name).lower()
    if value in _ON:
        return True
    if value in _OFF or not value:
        return False
    raise TransmodError(f"${name}={os.environ[name]!r} is not a switch; set it to one of {'/'.join(_ON)} (on) or "
                        f"{'/'.join(_OFF)} (off), any case, or leave it empty")


def count(name: str) -> int | None:
    """A positive whole number (threads, ...); None when unset or empty."""
    value = _value(name)
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise TransmodError(f"${name}={os.environ[name]!r} is not a positive whole number; set it to 1 or more, "
                            "or leave it empty")
    return int(value)
