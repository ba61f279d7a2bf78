"""Bottleneck adapters (`adapters`' SeqBnConfig) on Llama and Mistral: the adapter after the MLP reads the layer's
output (the un-normed residual stream) and adds to it; moved with the invariants of DESIGN.md section 4."""

import copy
import json
import math

import pytest
import torch
from conftest import SENTENCES
from decoders import logits, make_decoder, make_decoder_tokenizer, permute_decoder, save_decoder
from safetensors.torch import load_file

from transmod.align.alignment import METHODS, assign_correlation, fit_alignment
from transmod.align.correlation import correlate_samples
from transmod.align.embeddings import embedding_alignment
from transmod.align.fidelity import transfer_fidelity
from transmod.align.samplefile import SampleFile
from transmod.align.sampling import sample_hidden_states
from transmod.align.transfer import transfer_module
from transmod.cli import main
from transmod.errors import TransmodError
from transmod.modules.architectures import load_model_shape, model_shape
from transmod.modules.io import read_module

pytestmark = pytest.mark.filterwarnings("ignore:Could not find a config file")


def with_adapter(base, seed: int = 1, bottleneck: int = 8, leave_out=()):
    """A copy of `base` with a seq_bn adapter of random weights (its up-projection too), active."""
    import adapters

    model = copy.deepcopy(base)
    adapters.init(model)
    model.add_adapter("task", config=adapters.SeqBnConfig(reduction_factor=base.config.hidden_size // bottleneck,
                                                             leave_out=list(leave_out)))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".adapters.task." in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    model.set_active_adapters("task")
    return model.eval()


def load_moved(base, folder):
    """The student with the moved adapter loaded by the plain documented call; every adapter weight checked."""
    import adapters

    model = copy.deepcopy(base)
    adapters.init(model)
    name = model.load_adapter(str(folder))
    model.set_active_adapters(name)
    saved = load_file(folder / "adapter.safetensors")
    params = {n: p for n, p in model.named_parameters() if ".adapters." in n}
    assert sorted(params) == sorted(f"model.{k}" for k in saved)  # nothing missing, nothing left over
    assert all(torch.equal(params[f"model.{k}"], v) for k, v in saved.items())
    return model.eval()


def samples(teacher, student, tmp_path, sentences=SENTENCES):
    """Adapter-hook samples of the two bare models on the same text."""
    files = []
    for who, model in (("t", teacher), ("s", student)):
        files.append(tmp_path / f"{who}.parquet")
        sample_hidden_states(model.model, make_decoder_tokenizer(), [(s,) for s in sentences], {"adapter": files[-1]},
                             model_name=who)
    return SampleFile.open(files[0]), SampleFile.open(files[1])


def test_the_adapter_hook_samples_exactly_what_the_adapter_reads(tmp_path):
    """adapters feeds its down-projection the layer's un-normed output (MLP output + residual): the adapter hook's `h`.

    Only layer 1 carries the adapter, so what it reads is the bare model's state, as sampled."""
    base = make_decoder("llama")
    teacher = with_adapter(base, leave_out=[0])
    seen = {}
    down = teacher.model.layers[1].output_adapters.adapters["task"].adapter_down
    handle = down.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0]))
    with torch.no_grad():
        teacher(**make_decoder_tokenizer()([SENTENCES[0]], return_tensors="pt"))
    handle.remove()
    t, _ = samples(base, base, tmp_path, [SENTENCES[0]])
    assert t.meta["hook"] == "adapter" and t.meta["spaces"] == ["h"] and t.width("h") == 64
    sampled = next(t.iter_columns(["h1"], 64))["h1"]
    torch.testing.assert_close(torch.from_numpy(sampled), seen["x"][0, 1:], rtol=0, atol=1e-5)  # BOS is not sampled
