import pytest

from transmod.align.layermap import avg_map, copy_map, layer_map, skip_map
from transmod.errors import TransmodError


@pytest.mark.parametrize(
    "lt, ls, expected",
    [
        (24, 12, [[2 * l] for l in range(12)]),
        (12, 6, [[0], [2], [4], [6], [8], [10]]),
        (24, 6, [[0], [4], [8], [12], [16], [20]]),
        (12, 5, [[0], [2], [4], [7], [9]]),
        (6, 6, [[l] for l in range(6)]),
    ],
)
def test_skip(lt, ls, expected):
    assert skip_map(lt, ls) == expected


@pytest.mark.parametrize("lt, ls", [(24, 12), (12, 6), (24, 6), (12, 5), (7, 3), (6, 6)])
def test_avg_groups_partition_every_teacher_layer(lt, ls):
    groups = avg_map(lt, ls)
    assert len(groups) == ls
    assert [t for g in groups for t in g] == list(range(lt))  # contiguous, ordered, nothing dropped
    assert all(g[0] == s[0] for g, s in zip(groups, skip_map(lt, ls)))  # a group starts at the SKIP layer


def test_avg_integer_ratio_takes_all_k_layers():
    assert avg_map(12, 6) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
    assert avg_map(24, 6)[1] == [4, 5, 6, 7]
    assert avg_map(12, 5) == [[0, 1], [2, 3], [4, 5, 6], [7, 8], [9, 10, 11]]


def test_student_deeper_than_teacher_is_refused():
    with pytest.raises(TransmodError, match="deeper than the teacher"):
        layer_map("skip", 6, 12)


def test_unknown_mapping_names_the_valid_ones():
    with pytest.raises(TransmodError, match="skip, avg"):
        layer_map("mean", 12, 6)


def test_copy_takes_the_teachers_first_layers_as_they_are():
    assert copy_map(12, 6) == [[l] for l in range(6)] == layer_map("copy", 12, 6)
    assert copy_map(4, 4) == skip_map(4, 4)  # same depth: skip is the copy
    with pytest.raises(TransmodError, match="deeper than the teacher"):
        copy_map(2, 3)
