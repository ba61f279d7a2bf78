"""transmod: move parameter-efficient modules from a teacher model to a student model."""

from transmod.errors import TransmodError

__version__ = "0.1.0"
__all__ = ["TransmodError", "__version__"]
