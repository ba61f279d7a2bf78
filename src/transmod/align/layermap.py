"""Which teacher layers feed each student layer (DESIGN.md section 4)."""

from __future__ import annotations

from transmod.errors import TransmodError

MAPPINGS = ("skip", "avg")


def _check_depths(teacher_layers: int, student_layers: int) -> None:
    if student_layers < 1 or teacher_layers < 1:
        raise TransmodError(f"layer counts must be positive (teacher {teacher_layers}, student {student_layers})")
    if student_layers > teacher_layers:
        raise TransmodError(
            f"the student ({student_layers} layers) is deeper than the teacher ({teacher_layers} layers): "
            "transfer goes from a deeper or equal teacher to a shallower student; swap the models"
        )


def skip_map(teacher_layers: int, student_layers: int) -> list[list[int]]:
    """Student layer l takes teacher layer floor(l * Lt / Ls): l*k for an integer ratio k, evenly spaced otherwise."""
    _check_depths(teacher_layers, student_layers)
    return [[(l * teacher_layers) // student_layers] for l in range(student_layers)]


def avg_map(teacher_layers: int, student_layers: int) -> list[list[int]]:
    """Student layer l averages every teacher layer of its group [floor(l*Lt/Ls), floor((l+1)*Lt/Ls)).

    The groups partition all teacher layers, so no layer is dropped (unlike a known public
    implementation that leaves out the last layer of each group).
    """
    _check_depths(teacher_layers, student_layers)
    bounds = [(l * teacher_layers) // student_layers for l in range(student_layers + 1)]
    return [list(range(bounds[l], bounds[l + 1])) for l in range(student_layers)]


def layer_map(mapping: str, teacher_layers: int, student_layers: int) -> list[list[int]]:
    """The teacher layer group of each student layer, for a mapping named in MAPPINGS."""
    if mapping == "skip":
        return skip_map(teacher_layers, student_layers)
    if mapping == "avg":
        return avg_map(teacher_layers, student_layers)
    raise TransmodError(f"unknown --mapping {mapping!r}: use one of {', '.join(MAPPINGS)}")
