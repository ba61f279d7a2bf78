import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from helpers.decoders import make_decoder, make_decoder_tokenizer
from helpers.models import SENTENCES, add_module, make_model

from transmod.align.samplefile import SampleFile, SampleWriter, from_vectors, to_bfloat16, to_vectors
from transmod.align.sampling import capture, sample_hidden_states
from transmod.errors import TransmodError
from transmod.modules.architectures import architecture


@pytest.mark.parametrize("model_type", ["bert", "distilbert", "xlm-roberta"])
@pytest.mark.parametrize("peft", ["adapter", "lora"])
def test_sampled_states_are_the_module_inputs(tmp_path, tokenizer, model_type, peft):
    model = make_model(model_type, 3)
    examples = [(s,) for s in SENTENCES[:10]]
    out = tmp_path / "s.parquet"
    other = "lora" if peft == "adapter" else "adapter"  # both hook types in one pass, as the workflow samples
    n = sample_hidden_states(model, tokenizer, examples, {peft: out, other: tmp_path / "other.parquet"},
                             model_name="tiny", batch_size=4, lora_outputs=True)
    sample = SampleFile.open(out)
    assert sample.num_tokens == n == sum(len(s.split()) for s, in examples)  # no [CLS]/[SEP]/padding
    assert sample.meta["hook"] == peft and sample.meta["num_layers"] == 3 and sample.meta["hidden_size"] == 24

    enc = tokenizer([s for s, in examples], padding=True, return_tensors="pt", return_special_tokens_mask=True)
    keep = enc.pop("special_tokens_mask").eq(0) & enc["attention_mask"].bool()
    with torch.no_grad():
        hs = model(**{k: v for k, v in enc.items() if k != "token_type_ids" or model_type != "distilbert"},
                   output_hidden_states=True).hidden_states
    table = pq.read_table(out)
    for l in range(3):
        got = from_vectors(table.column(f"h{l}").combine_chunks())
        # adapter: the output adapter reads the layer's final LayerNorm output = the layer's output;
        # LoRA: query/value read the layer's input.
        expected = (hs[l + 1] if peft == "adapter" else hs[l])[keep].numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("model_type", ["bert", "distilbert"])
def test_hook_point_matches_the_adapters_library(tokenizer, model_type):
    """With a zeroed-out adapter in place, adapter_down receives exactly what sampling records."""
    model = make_model(model_type, 2)
    add_module(model, "adapter")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adapter_up" in name:
                p.zero_()
    seen = {}
    arch = architecture(model.config.model_type)
    layers = model.get_submodule(arch.layers_path)
    for l, layer in enumerate(layers):
        down = layer.get_submodule(arch.adapter_site)["task"].adapter_down
        down.register_forward_pre_hook(lambda m, args, l=l: seen.__setitem__(l, args[0].detach()))
    enc = tokenizer(SENTENCES[:3], padding=True, return_tensors="pt")
    if model_type == "distilbert":
        enc.pop("token_type_ids")
    with capture(model, arch, {"adapter": ("h",)}) as store, torch.no_grad():
        model(**enc)
        for l in range(2):
            torch.testing.assert_close(store[f"adapter:h{l}"], seen[l])


def test_hooks_do_not_change_outputs(tokenizer):
    model = make_model("bert", 2)
    enc = tokenizer(SENTENCES[:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**enc).last_hidden_state
        with capture(model, architecture("bert"), {"lora": ("h", "q", "v"), "adapter": ("h",)}):
            during = model(**enc).last_hidden_state
    assert torch.equal(before, during)


def test_max_tokens_draws_sentences_spread_over_the_data(tmp_path, tokenizer):
    examples = [(s,) for s in SENTENCES]
    sents = {}
    for name, model in (("a", make_model("bert", 1)), ("b", make_model("distilbert", 1, seed=5)), ("c", make_model("bert", 1))):
        out = tmp_path / f"{name}.parquet"
        n = sample_hidden_states(model, tokenizer, examples, {"adapter": out}, model_name=name, max_tokens=40, batch_size=2)
        table = pq.read_table(out, columns=["sent", "start", "token"])
        assert n == 40 == table.num_rows
        sents[name] = table.to_pydict()
    drawn = sorted(set(sents["a"]["sent"]))
    assert drawn != list(range(len(drawn)))  # not the first sentences of the file
    assert max(drawn) >= len(SENTENCES) // 2 and min(drawn) < len(SENTENCES) // 2  # from across the data
    assert sents["a"] == sents["b"] == sents["c"]  # every model keeps the same tokens, run after run
    words = [SENTENCES[i].split() for i in drawn]  # each key still names its sentence's text
    assert all(token in words[drawn.index(i)] for i, token in zip(sents["a"]["sent"], sents["a"]["token"]))


def test_empty_and_foreign_files_are_refused(tmp_path):
    import pyarrow as pa

    pq.write_table(pa.table({"x": [1]}), tmp_path / "foreign.parquet")
    with pytest.raises(TransmodError, match="not a transmod sample file"):
        SampleFile.open(tmp_path / "foreign.parquet")
    with pytest.raises(TransmodError, match="no such sample file"):
        SampleFile.open(tmp_path / "missing.parquet")


def test_max_length_bounds_the_stored_tokens_of_each_pair(tmp_path, tokenizer):
    """Pairs take three special tokens; --max-length 5 keeps two text tokens of each pair, and 3 is refused."""
    model = make_model("bert", 1)
    examples = [(SENTENCES[i], SENTENCES[i + 1]) for i in range(0, 12, 2)]
    n = sample_hidden_states(model, tokenizer, examples, {"adapter": tmp_path / "s.parquet"}, model_name="tiny",
                             max_length=5)
    sents = pq.read_table(tmp_path / "s.parquet", columns=["sent"]).column("sent").to_pylist()
    assert n == 2 * len(examples) and sorted(sents) == sorted(list(range(len(examples))) * 2)
    with pytest.raises(TransmodError, match="3 special tokens.*each pair; give --max-length 4 or more"):
        sample_hidden_states(model, tokenizer, examples, {"adapter": tmp_path / "t.parquet"}, model_name="tiny",
                             max_length=3)


def test_bfloat16_vectors_round_as_torch_does_and_read_back_as_float32():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.standard_normal((50, 8)) * 10.0 ** rng.integers(-30, 30, (50, 1)),
                             [[0.0, -0.0, np.inf, -np.inf, 1 + 2**-8, 1 + 3 * 2**-8, 3.0e38, 1e-40]]]).astype(np.float32)
    bits = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(to_bfloat16(values), bits)  # round to nearest, ties to even
    back = from_vectors(to_vectors(values, "bfloat16"), "bfloat16")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, torch.from_numpy(values).to(torch.bfloat16).float().numpy())
    nans = np.array([0x7FC00000, 0xFFFFFFFF, 0x7FFFFFFF], "<u4").view("<f4").reshape(1, 3)
    assert np.isnan(from_vectors(to_vectors(nans, "bfloat16"), "bfloat16")).all()  # never rounded to a number


def test_a_decoder_sampled_in_bfloat16_holds_its_float32_states_rounded_in_half_the_bytes(tmp_path):
    model = make_decoder("llama")
    examples = [(s,) for s in SENTENCES[:12]]
    for dtype in ("float32", "bfloat16"):
        sample_hidden_states(model.model, make_decoder_tokenizer(), examples, {"lora": tmp_path / f"{dtype}.parquet"},
                             model_name="llama", dtype=dtype)
    wide, half = SampleFile.open(tmp_path / "float32.parquet"), SampleFile.open(tmp_path / "bfloat16.parquet")
    assert (wide.dtype, half.dtype) == ("float32", "bfloat16") and wide.num_tokens == half.num_tokens > 50
    np.testing.assert_array_equal(wide.keys(), half.keys())
    columns = [f"{s}{l}" for s in half.meta["spaces"] for l in range(half.num_layers)]
    for a, b in zip(wide.iter_columns(columns, 40), half.iter_columns(columns, 40)):
        for column in columns:
            assert b[column].dtype == np.float32
            np.testing.assert_array_equal(b[column], from_vectors(to_vectors(a[column], "bfloat16"), "bfloat16"))
    sizes = [pq.ParquetFile(f.path).metadata.row_group(0).total_byte_size for f in (wide, half)]
    assert 0.45 < sizes[1] / sizes[0] < 0.55


def test_a_sample_file_of_an_unknown_dtype_is_refused(tmp_path, tokenizer):
    import json

    out = tmp_path / "s.parquet"
    sample_hidden_states(make_model("bert", 2), tokenizer, [(s,) for s in SENTENCES[:3]], {"adapter": out},
                         model_name="tiny")
    table = pq.read_table(out)
    meta = json.loads(pq.ParquetFile(out).metadata.metadata[b"transmod"])
    assert meta["dtype"] == "float32"
    pq.write_table(table.replace_schema_metadata({b"transmod": json.dumps({**meta, "dtype": "float8"})}),
                   tmp_path / "odd.parquet")
    with pytest.raises(TransmodError, match="dtype is 'float8', not one of float32, bfloat16"):
        SampleFile.open(tmp_path / "odd.parquet")
    with pytest.raises(TransmodError, match="bad.parquet: dtype 'float16': give one of float32, bfloat16"):
        SampleWriter(tmp_path / "bad.parquet", ["h0"], 24, dtype="float16")
    assert not (tmp_path / "bad.parquet").exists()
    del meta["dtype"]  # a file written before dtypes: float32
    pq.write_table(table.replace_schema_metadata({b"transmod": json.dumps(meta)}), tmp_path / "old.parquet")
    assert SampleFile.open(tmp_path / "old.parquet").dtype == "float32"
