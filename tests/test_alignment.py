"""Every alignment method keeps the invariants of docs/method.md section 7, on real models with real modules."""

import copy
import json

import numpy as np
import pytest
import torch
from helpers.models import (
    SENTENCES,
    add_module,
    encoder_samples,
    hidden_axes,
    make_config,
    make_model,
    make_tokenizer,
    model_inputs,
    permute_hidden,
)
from safetensors.torch import load_file

from transmod.align.alignment import Alignment, fit_alignment, select_alignment
from transmod.align.correlation import correlate_samples
from transmod.align.methods import grid_methods
from transmod.align.samplefile import SampleFile
from transmod.align.sampling import sample_hidden_states
from transmod.align.transfer import transfer_module
from transmod.atomic import MARK
from transmod.cli import main
from transmod.errors import TransmodError
from transmod.modules.architectures import model_shape

DATA_METHODS = ["lsa", "lsa-signed", "linear", "procrustes"]


def _transfer_and_run(teacher, student_base, alignment, tmp_path, peft, lora_b="study", name="out"):
    import adapters

    teacher.save_adapter(str(tmp_path / "m"), "task", use_safetensors=True)
    shape = model_shape(teacher.config, "m")
    transfer_module(tmp_path / "m", shape, model_shape(student_base.config, "s"), "skip", tmp_path / name,
                    lora_b=lora_b, alignment=alignment)
    student = copy.deepcopy(student_base)
    adapters.init(student)
    student.load_adapter(str(tmp_path / name), load_as="task", use_safetensors=True)
    student.set_active_adapters("task")
    with torch.no_grad():
        return teacher(**model_inputs(teacher)).last_hidden_state, student(**model_inputs(student)).last_hidden_state


def flip_all_hidden(model):
    """The same network with every residual-stream dimension negated: an exact symmetry.

    LayerNorm keeps its weight and negates its bias (LN(-x) = -(x - mu)/s * g + b). Negating only some
    dimensions is *not* a symmetry of a LayerNorm model (the mean and variance over dims change), so a
    partial flip is planted where it is exact: the query/key and value output spaces (`flip_heads`).
    """
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ("LayerNorm" in name or "layer_norm" in name) and name.endswith("weight"):
                continue
            for _ in hidden_axes(name, model.config.model_type):
                param.neg_()
    return model


def flip_heads(model, dims):
    """Negate some query/key output dims (scores unchanged) and value output dims (undone by the output dense)."""
    with torch.no_grad():
        for layer in model.encoder.layer:
            att = layer.attention
            for lin in (att.self.query, att.self.key, att.self.value):
                lin.weight[dims] *= -1
                lin.bias[dims] *= -1
            att.output.dense.weight[:, dims] *= -1
    return model


@pytest.fixture(scope="module")
def base():
    return make_model("bert", 2)


def test_cli_help_lists_every_method(capsys):
    for command in ("transfer", "fit-alignment"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert all(method in text for method in grid_methods()), (command, text)


@pytest.mark.parametrize("peft", ["adapter", "lora"])
def test_every_method_is_the_identity_on_the_same_model(tmp_path, base, peft):
    teacher = add_module(copy.deepcopy(base), peft)
    samples = encoder_samples((base, base), tmp_path, peft)
    for method in grid_methods():
        alignment = fit_alignment(*samples, "skip", method)
        if method in ("lsa", "lsa-signed", "select"):
            assert all(lm.sigma.tolist() == list(range(24)) for lm in alignment.layers)
            assert all(lm.sign is None or (lm.sign == 1).all() for lm in alignment.layers)
        want, got = _transfer_and_run(teacher, base, alignment, tmp_path, peft, name=method)
        exact = method in ("lsa", "lsa-signed", "select")
        torch.testing.assert_close(got, want, rtol=0, atol=0 if exact else 1e-5, msg=method)


@pytest.mark.parametrize("peft, lora_b", [("adapter", "study"), ("lora", "output")])
def test_planted_permutation_is_reproduced_by_every_data_method(tmp_path, base, peft, lora_b):
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(3))
    student_base = permute_hidden(copy.deepcopy(base), perm)
    teacher = add_module(copy.deepcopy(base), peft)
    samples = encoder_samples((base, student_base), tmp_path, peft, lora_outputs=peft == "lora")
    for method in DATA_METHODS:
        alignment = fit_alignment(*samples, "skip", method)
        for lm in alignment.layers:
            expected = np.eye(24)[perm] if lm.space == "h" else np.eye(24)  # q/v outputs are not permuted
            if lm.sigma is not None:
                assert lm.sigma.tolist() == expected.argmax(1).tolist(), method
            else:
                np.testing.assert_allclose(lm.m_in, expected.T, atol=1e-5, err_msg=method)
                np.testing.assert_allclose(lm.m_out, expected, atol=1e-5, err_msg=method)
        want, got = _transfer_and_run(teacher, student_base, alignment, tmp_path, peft, lora_b, name=method)
        torch.testing.assert_close(got, want[..., perm], rtol=0, atol=1e-4, msg=method)


def test_planted_sign_flip_of_the_residual_stream_is_recovered_by_lsa_signed_not_lsa(tmp_path, base):
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(5))
    student_base = flip_all_hidden(permute_hidden(copy.deepcopy(base), perm))
    teacher = add_module(copy.deepcopy(base), "adapter")
    samples = encoder_samples((base, student_base), tmp_path, "adapter")
    outputs = {}
    for method in DATA_METHODS:
        alignment = fit_alignment(*samples, "skip", method)
        if method == "lsa-signed":
            assert all(lm.sigma.tolist() == perm.tolist() and (lm.sign == -1).all() for lm in alignment.layers)
        if method == "lsa":
            assert all(lm.sigma.tolist() != perm.tolist() for lm in alignment.layers)
        outputs[method] = _transfer_and_run(teacher, student_base, alignment, tmp_path, "adapter", name=method)
    for method in ("lsa-signed", "linear", "procrustes"):
        want, got = outputs[method]
        torch.testing.assert_close(got, -want[..., perm], rtol=0, atol=1e-4, msg=method)
    want, got = outputs["lsa"]
    assert (got + want[..., perm]).abs().max() > 0.1


def test_partial_sign_flip_of_lora_output_spaces_is_recovered_by_lsa_signed_not_lsa(tmp_path, base):
    dims = torch.tensor([1, 4, 5, 11, 17, 20])
    student_base = flip_heads(copy.deepcopy(base), dims)
    with torch.no_grad():  # the flip is an exact symmetry of the bare model
        torch.testing.assert_close(student_base(**model_inputs(base)).last_hidden_state,
                                   base(**model_inputs(base)).last_hidden_state, rtol=0, atol=1e-5)
    teacher = add_module(copy.deepcopy(base), "lora")
    samples = encoder_samples((base, student_base), tmp_path, "lora", lora_outputs=True)
    signs = np.ones(24)
    signs[dims] = -1
    results = {}
    for method in ("lsa", "lsa-signed"):
        alignment = fit_alignment(*samples, "skip", method)
        for lm in alignment.layers:
            if method == "lsa-signed":
                want_sign = signs if lm.space in "qv" else np.ones(24)
                assert lm.sigma.tolist() == list(range(24)) and lm.sign.tolist() == want_sign.tolist(), lm.space
        results[method] = _transfer_and_run(teacher, student_base, alignment, tmp_path, "lora", "output", name=method)
    want, got = results["lsa-signed"]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    want, got = results["lsa"]
    assert (got - want).abs().max() > 1e-2


def test_lsa_alignment_folds_exactly_as_the_study_assignment(tmp_path, base):
    from transmod.align.alignment import assign_correlation
    from transmod.align.correlation import correlate_samples

    wide = make_model("bert", 4, hidden=24)
    narrow = make_model("bert", 2, hidden=16, seed=5)
    teacher = add_module(copy.deepcopy(wide), "adapter", bottleneck=6)
    teacher.save_adapter(str(tmp_path / "m"), "task", use_safetensors=True)
    samples = encoder_samples((wide, narrow), tmp_path, "adapter")
    shapes = model_shape(wide.config, "t"), model_shape(narrow.config, "s")
    transfer_module(tmp_path / "m", *shapes, "avg", tmp_path / "a", assign_correlation(correlate_samples(*samples, "avg")))
    alignment = fit_alignment(*samples, "avg", "lsa")
    alignment.save(tmp_path / "lsa.safetensors")
    transfer_module(tmp_path / "m", *shapes, "avg", tmp_path / "b", alignment=Alignment.load(tmp_path / "lsa.safetensors"))
    a, b = load_file(tmp_path / "a" / "adapter.safetensors"), load_file(tmp_path / "b" / "adapter.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for method in grid_methods():  # every method folds to the student's shape, and the file round-trips
        fitted = fit_alignment(*samples, "avg", method)
        fitted.save(tmp_path / f"{method}.safetensors")
        loaded = Alignment.load(tmp_path / f"{method}.safetensors")
        transfer_module(tmp_path / "m", *shapes, "avg", tmp_path / method, alignment=loaded)
        w = load_file(tmp_path / method / "adapter.safetensors")
        assert w["encoder.layer.1.output.adapters.task.adapter_down.0.weight"].shape == (6, 16), method
        assert w["encoder.layer.1.output.adapters.task.adapter_up.weight"].shape == (16, 6), method
        assert all(torch.isfinite(t).all() for t in w.values())


def test_select_takes_every_kth_dimension():
    t = {"model": "t", "model_type": "bert", "num_layers": 4, "hidden_size": 24}
    s = {"model": "s", "model_type": "bert", "num_layers": 2, "hidden_size": 12}
    alignment = select_alignment(t, s, "skip")
    assert [lm.sigma.tolist() for lm in alignment.layers] == [list(range(0, 24, 2))] * 2
    assert [lm.teacher_layers for lm in alignment.layers] == [[0], [2]]


def test_bad_method_and_too_few_tokens_say_what_to_do(tmp_path, base):
    samples = encoder_samples((base, base), tmp_path, "adapter", sentences=SENTENCES[:3])
    with pytest.raises(TransmodError, match="use one of lsa, lsa-signed, linear, procrustes, select"):
        fit_alignment(*samples, "skip", "hungarian")
    assert samples[0].num_tokens < 24  # three short sentences: fewer tokens than dims
    for method in ("linear", "procrustes"):
        with pytest.raises(TransmodError, match=r"needs at least 25 shared tokens") as err:
            fit_alignment(*samples, "skip", method)
        assert "--max-tokens" in str(err.value)
    fit_alignment(*samples, "skip", "lsa-signed")  # assignments need no minimum


def test_an_older_assignment_file_loads_as_the_lsa_alignment_and_folds_alike(tmp_path):
    """`transmod assign` wrote JSON before assignments became alignments; such files still transfer, bit for bit."""
    from transmod.align.alignment import assign_correlation
    from transmod.align.correlation import correlate_samples

    wide, narrow = make_model("bert", 4, hidden=24), make_model("bert", 2, hidden=16, seed=5)
    add_module(copy.deepcopy(wide), "adapter", bottleneck=6).save_adapter(str(tmp_path / "m"), "task", use_safetensors=True)
    samples = encoder_samples((wide, narrow), tmp_path, "adapter")
    shapes = model_shape(wide.config, "t"), model_shape(narrow.config, "s")
    current = assign_correlation(correlate_samples(*samples, "skip"))
    legacy = {MARK: "assignment", "mapping": "skip", "teacher": current.teacher, "student": current.student,
              "num_tokens": current.num_tokens,
              "layers": [{"student_layer": lm.student_layer, "teacher_layers": lm.teacher_layers, "space": lm.space,
                          "sigma": lm.sigma.tolist(), "mean_r": lm.mean_r} for lm in current.layers]}
    (tmp_path / "old.json").write_text(json.dumps(legacy, indent=1))
    current.save(tmp_path / "new.safetensors")
    old, new = Alignment.load(tmp_path / "old.json"), Alignment.load(tmp_path / "new.safetensors")
    assert old.method == new.method == "lsa"
    assert [lm.sigma.tolist() for lm in old.layers] == [lm.sigma.tolist() for lm in new.layers]
    for name, alignment in (("a", old), ("b", new)):
        transfer_module(tmp_path / "m", *shapes, "skip", tmp_path / name, alignment)
    a, b = load_file(tmp_path / "a" / "adapter.safetensors"), load_file(tmp_path / "b" / "adapter.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    (tmp_path / "bad.json").write_text(json.dumps({MARK: "assignment", "mapping": "skip"}))
    with pytest.raises(TransmodError, match="not a transmod assignment file.*recreate it with `transmod assign`"):
        Alignment.load(tmp_path / "bad.json")


def _chunk_tokenizer(size: int):
    """A tokenizer of another family: it cuts every word into pieces of `size` characters."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = sorted({w[i:i + size] for s in SENTENCES for w in s.split() for i in range(0, len(w), size)})
    vocab = {p: i for i, p in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *pieces])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                 pre_tokenizers.Split(Regex(f".{{1,{size}}}"), "isolated")])
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
        ("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def _metaspace_tokenizer():
    """SentencePiece-style whole-word pieces (`▁word`, as XLM-R, ALBERT and DeBERTa-v3 cut): each piece's span
    holds the space before its word."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for s in SENTENCES for w in s.split()})
    vocab = {p: i for i, p in enumerate(["<pad>", "<unk>", "[CLS]", "[SEP]", *(f"▁{w}" for w in words)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", cls_token="[CLS]",
                                   sep_token="[SEP]")


def test_sentencepiece_and_wordpiece_tokens_of_one_word_pair_up(tmp_path):
    """`▁cat` spans " cat", WordPiece's `cat` spans "cat": trimmed, every word pairs across the two families."""
    from transformers import AutoModel

    from transmod.align.pairing import paired_share, shared_rows
    from transmod.align.sampling import trim_spans

    meta = _metaspace_tokenizer()("the cat sat", return_offsets_mapping=True)["offset_mapping"][1:-1]
    assert meta == [(0, 3), (3, 7), (7, 11)]  # the tokenizers library's Metaspace counts the space in
    start, end = trim_spans(["the cat sat"] * 3, *np.array(meta).T)
    assert list(zip(start.tolist(), end.tolist())) == [(0, 3), (4, 7), (8, 11)]
    assert [a.tolist() for a in trim_spans([" x ", "  "], [0, 0], [3, 2])] == [[1, 2], [2, 2]]  # a lone `▁`: empty
    files = {}
    for who, tokenizer, arch in (("t", make_tokenizer(), "bert"), ("s", _metaspace_tokenizer(), "albert")):
        config = make_config(arch, 2, hidden=16 if who == "s" else 24)
        config.vocab_size = len(tokenizer)
        torch.manual_seed(0)
        files[who] = tmp_path / f"{who}.parquet"
        sample_hidden_states(AutoModel.from_config(config).eval(), tokenizer, [(s,) for s in SENTENCES],
                             {"adapter": files[who]}, model_name=who)
    teacher, student = SampleFile.open(files["t"]), SampleFile.open(files["s"])
    assert np.array_equal(teacher.keys(), student.keys())  # untrimmed, only each sentence's first word would pair
    assert paired_share(teacher, student, shared_rows(teacher, student)[2]) == 1.0


def test_samples_keyed_by_an_older_transmod_are_refused(tmp_path):
    import pyarrow.parquet as pq

    teacher, student = encoder_samples((make_model("bert", 2), make_model("bert", 2, seed=1)), tmp_path, "adapter")
    table = pq.read_table(teacher.path)
    meta = json.loads(pq.read_metadata(teacher.path).metadata[b"transmod"])
    del meta["spans"]
    pq.write_table(table.replace_schema_metadata({b"transmod": json.dumps(meta).encode()}), tmp_path / "old.parquet")
    with pytest.raises(TransmodError, match="old.parquet was sampled by an older transmod.*re-sample it"):
        correlate_samples(SampleFile.open(tmp_path / "old.parquet"), student, "skip")


def test_a_cross_family_pair_transfers_and_reports_its_paired_token_share(tmp_path):
    """BERT (whole words) -> ELECTRA whose tokenizer cuts words into 4-character pieces: only the words of at
    most 4 characters are the same text span in both, and the fit says how many that is."""
    from transformers import AutoModel

    from transmod.align.correlation import correlate_samples

    words = [w for s in SENTENCES for w in s.split()]
    teacher_base = make_model("bert", 2)
    files, configs = {"t": tmp_path / "t.parquet"}, {}
    sample_hidden_states(teacher_base, make_tokenizer(), [(s,) for s in SENTENCES], {"adapter": files["t"]},
                         model_name="t")
    for size in (4, 1):
        tokenizer = _chunk_tokenizer(size)
        configs[size] = make_config("electra", 2, hidden=16)
        configs[size].vocab_size = len(tokenizer)
        torch.manual_seed(5)
        files[size] = tmp_path / f"s{size}.parquet"
        sample_hidden_states(AutoModel.from_config(configs[size]).eval(), tokenizer, [(s,) for s in SENTENCES],
                             {"adapter": files[size]}, model_name=f"electra-{size}")
    teacher, student = SampleFile.open(files["t"]), SampleFile.open(files[4])
    pieces = sum(-(-len(w) // 4) for w in words)
    expected = sum(len(w) <= 4 for w in words) / max(len(words), pieces)  # the student cuts more tokens
    assert student.num_rows == pieces and 0.3 < expected < 1
    corr = correlate_samples(teacher, student, "skip")
    fitted = fit_alignment(teacher, student, "skip", "lsa-signed")
    fitted.save(tmp_path / "a.safetensors")
    loaded = Alignment.load(tmp_path / "a.safetensors")
    assert corr.paired_share == fitted.paired_share == loaded.paired_share == pytest.approx(expected)
    assert corr.num_tokens == sum(len(w) <= 4 for w in words)

    import adapters

    add_module(copy.deepcopy(teacher_base), "adapter", bottleneck=6).save_adapter(str(tmp_path / "m"), "task",
                                                                              use_safetensors=True)
    student_base = AutoModel.from_config(configs[4]).eval()
    transfer_module(tmp_path / "m", model_shape(teacher_base.config, "t"), model_shape(student_base.config, "s"),
                    "skip", tmp_path / "out", loaded)
    adapters.init(student_base)
    info = {}
    student_base.load_adapter(str(tmp_path / "out"), load_as="task", use_safetensors=True, loading_info=info)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [], info
    student_base.set_active_adapters("task")
    with torch.no_grad():
        out = student_base(**_chunk_tokenizer(4)(SENTENCES[:4], padding=True, return_tensors="pt")).last_hidden_state
    assert out.shape[-1] == 16 and torch.isfinite(out).all()
    with pytest.raises(TransmodError, match=r"only \d+\.\d % of the tokens could be paired"):
        fit_alignment(teacher, SampleFile.open(files[1]), "skip", "lsa-signed")
