"""The similarity-based monotone layer map (`cka`) beside SKIP and AVG."""

import copy

import numpy as np
import pytest
import torch
from helpers.decoders import decoder_samples, make_decoder, peft_lora
from safetensors.torch import load_file

from transmod.align.alignment import Alignment, fit_alignment
from transmod.align.layermap import layer_map, monotone_map, skip_map
from transmod.align.layersim import cka_similarity
from transmod.align.transfer import transfer_module
from transmod.errors import TransmodError
from transmod.modules.architectures import model_shape

pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:Could not find a config file")


def test_monotone_map_maximises_the_summed_similarity_in_depth_order():
    sim = np.array([[0.9, 0.8, 0.1, 0.0, 0.0],
                    [0.1, 0.95, 0.9, 0.2, 0.0],
                    [0.0, 0.1, 0.3, 0.2, 0.1]])
    assert monotone_map(sim) == [[0], [1], [2]]  # student layer 2 must come after 1, though its best is not there
    rng = np.random.default_rng(0)
    for _ in range(20):
        sim = rng.random((3, 7))
        got = [g[0] for g in monotone_map(sim)]
        best = max((sum(sim[l, t] for l, t in enumerate(c)), list(c)) for c in _increasing(7, 3))
        assert got == best[1] and got == sorted(set(got))
    assert monotone_map(np.eye(4)) == [[0], [1], [2], [3]]
    with pytest.raises(TransmodError, match="deeper than the teacher"):
        monotone_map(np.ones((4, 3)))


def _increasing(n, k):
    from itertools import combinations

    return combinations(range(n), k)


def test_cka_maps_a_truncated_student_to_the_teacher_layers_it_kept(tmp_path):
    """A student that is the teacher's first 3 of 5 layers has the teacher's states there: CKA finds layers
    0, 1, 2 where SKIP (5 -> 3) would take 0, 1, 3; the moved LoRA then holds exactly those layers."""
    teacher = make_decoder("llama", layers=5)
    student = make_decoder("llama", layers=3)
    student.load_state_dict({k: v for k, v in teacher.state_dict().items() if not k.startswith(("model.layers.3.",
                                                                                              "model.layers.4."))})
    samples = decoder_samples((teacher, student), tmp_path)
    sim = cka_similarity(*samples)
    assert sim.shape == (3, 5) and np.allclose(np.diag(sim[:, :3]), 1.0)
    assert skip_map(5, 3) == [[0], [1], [3]]
    alignment = fit_alignment(*samples, "cka", "lsa")
    assert alignment.groups() == [[0], [1], [2]]
    alignment.save(tmp_path / "a.safetensors")
    peft_lora(teacher, tmp_path / "lora")
    shapes = model_shape(teacher.config, "t"), model_shape(student.config, "s")
    transfer_module(tmp_path / "lora", *shapes, "cka", tmp_path / "out", Alignment.load(tmp_path / "a.safetensors"),
                    fmt="peft")
    before, after = load_file(tmp_path / "lora" / "adapter_model.safetensors"), load_file(tmp_path / "out" / "adapter_model.safetensors")
    assert after.keys() == {k for k in before if ".layers.3." not in k and ".layers.4." not in k}
    assert all(torch.equal(after[k], before[k]) for k in after)


def test_cka_without_samples_is_refused_in_one_line(tmp_path):
    base = make_decoder("llama")
    peft_lora(copy.deepcopy(base), tmp_path / "lora")
    shape = model_shape(base.config, "m")
    with pytest.raises(TransmodError, match="--mapping cka picks teacher layers by their similarity on sampled states"):
        transfer_module(tmp_path / "lora", shape, shape, "cka", tmp_path / "out", fmt="peft")
    with pytest.raises(TransmodError, match="cka"):
        layer_map("cka", 4, 2)
    assert not (tmp_path / "out").exists()
