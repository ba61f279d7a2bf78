"""transmod: move parameter-efficient modules from a teacher model to a student model.

    import transmod
    moved = transmod.transfer("my_lora", teacher="Qwen/Qwen2.5-7B", student="Qwen/Qwen2.5-1.5B", mapping="skip",
                              samples="text.txt", method="procrustes")
    moved.save("student_lora")

`transfer` (`transmod.align.api`) is imported on first use: `import transmod` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transmod.errors import TransmodError

if TYPE_CHECKING:
    from transmod.align.api import Transferred, transfer

__version__ = "0.1.0"
__all__ = ["TransmodError", "Transferred", "__version__", "transfer"]
_LAZY = {"transfer", "Transferred"}  # names of transmod.align.api, imported when first asked for


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from transmod.align import api

        return getattr(api, name)
    raise AttributeError(f"module 'transmod' has no attribute {name!r}")
