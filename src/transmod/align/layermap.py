"""Which teacher layers feed each student layer (docs/method.md, section 4)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from transmod.errors import TransmodError

SAMPLED_MAPPINGS = ("cka",)  # from the two models' sampled states (transmod.align.layersim.layer_groups)


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


def copy_map(teacher_layers: int, student_layers: int) -> list[list[int]]:
    """Student layer l takes teacher layer l: a module loaded as it is onto a model of the same shape (what peft
    does with a LoRA of another model), the baseline any transfer between related models must beat."""
    _check_depths(teacher_layers, student_layers)
    return [[l] for l in range(student_layers)]


# from the depths alone, one entry each: the workflow's grid runs these, and they name inits
MAPPINGS: dict[str, Callable[[int, int], list[list[int]]]] = {"skip": skip_map, "avg": avg_map}
COPY = "copy"  # copy_map, never aligned in the grid: the `copy` init is the teacher's module as it is


def mapping_names() -> tuple[str, ...]:
    """Every mapping a transfer takes: from the depths, the copy, and from samples."""
    return (*MAPPINGS, COPY, *SAMPLED_MAPPINGS)


def layer_map(mapping: str, teacher_layers: int, student_layers: int) -> list[list[int]]:
    """The teacher layer group of each student layer, for a mapping from the depths (MAPPINGS, or COPY)."""
    if mapping == COPY:
        return copy_map(teacher_layers, student_layers)
    if mapping in MAPPINGS:
        return MAPPINGS[mapping](teacher_layers, student_layers)
    if mapping in SAMPLED_MAPPINGS:
        raise TransmodError(f"--mapping {mapping} picks teacher layers by their similarity on sampled states: give "
                            "--samples, or an alignment fitted with that mapping")
    raise TransmodError(f"unknown --mapping {mapping!r}: use one of {', '.join(mapping_names())}")


def monotone_map(similarity: np.ndarray) -> list[list[int]]:
    """The increasing teacher layer of each student layer (similarity: student x teacher) with the largest summed
    similarity, by dynamic programming: depth order is kept, and no teacher layer serves two student layers."""
    ls, lt = similarity.shape
    _check_depths(lt, ls)
    best = np.full((ls, lt), -np.inf)  # best[l, t]: the best sum for student layers 0..l with layer l on teacher t
    back = np.zeros((ls, lt), dtype=np.int64)
    best[0] = similarity[0]
    for l in range(1, ls):
        for t in range(l, lt - (ls - 1 - l)):
            prev = int(np.argmax(best[l - 1, :t]))
            best[l, t], back[l, t] = best[l - 1, prev] + similarity[l, t], prev
    path = [int(np.argmax(best[-1, ls - 1:])) + ls - 1]
    for l in range(ls - 1, 0, -1):
        path.append(int(back[l, path[-1]]))
    return [[t] for t in reversed(path)]


def pooled_groups(groups: list[list[int]], depths: list[list[int]]) -> list[list[int]]:
    """The teacher depths that each student module layer reads: its depths' groups together."""
    return [sorted({t for a in ds for t in groups[a]}) for ds in depths]
