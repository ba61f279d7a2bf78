"""Decoder tasks scored by likelihood (transmod.train.lmscore, `transmod evaluate`): every score against one computed
independently, one unpadded sequence at a time, on a tiny Llama whose tokenizer has no pad token."""

from __future__ import annotations

import itertools
import json
import re

import pytest
import torch
from helpers.commands import run_cli
from helpers.decoders import load_peft, make_decoder, make_decoder_tokenizer, peft_lora, save_decoder

from transmod.errors import TransmodError
from transmod.train.lmscore import Prefix, Scored, all_logprobs, encode, pad_id_of, score_decoder
from transmod.train.tasks import declare_task

COMPLETION = declare_task("qa", dict(kind="completion", text_columns=["prompt"], label_column="completion",
                                     metric="exact_match"))
CHOICE = declare_task("mc", dict(kind="multiple-choice", text_columns=["question"], choices_column="choices",
                                 label_column="answer", metric="accuracy"))
QUESTIONS = ["the cat sat on the", "anna sees a big", "tom walks near the old", "the bird eats"]
CHOICES = [["mat", "red house", "river"], ["dog", "blue tree"], ["bank", "city", "far green river"], ["tree", "a"]]


@pytest.fixture(scope="module")
def padless():
    tokenizer = make_decoder_tokenizer(pad=False)
    assert tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None
    return make_decoder("llama", seed=1, vocab=len(tokenizer)), tokenizer


def logprobs_one_by_one(model, ids: list[int], start: int) -> list[float]:
    """The log-probability of each token from `start` on, from one unpadded forward pass."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    return [torch.log_softmax(logits[t - 1], -1)[ids[t]].item() for t in range(start, len(ids))]


def test_choices_are_scored_by_log_likelihood_per_character(padless):
    model, tokenizer = padless
    rows = [{"question": q, "choices": c, "answer": 0} for q, c in zip(QUESTIONS, CHOICES)]
    result = score_decoder(model, tokenizer, CHOICE, rows, batch_size=3)
    expected = []
    for q, choices in zip(QUESTIONS, CHOICES):
        context = tokenizer(q)["input_ids"]
        scores = [sum(logprobs_one_by_one(model, context + tokenizer(c, add_special_tokens=False)["input_ids"],
                                          len(context))) / len(c) for c in choices]
        expected.append(max(range(len(scores)), key=scores.__getitem__))
    assert result["predictions"] == expected
    assert result["accuracy"] == sum(p == 0 for p in expected) / len(rows)
    assert len(set(expected)) > 1  # the rows do not all pick the same place


@pytest.mark.parametrize("family, options", [("llama", {}), ("gemma3_text", {}),
                                             ("gemma3_text", {"sliding_window": 4})])
@pytest.mark.parametrize("instruction", ["", "anna sees the old tree and the bird eats :"])
def test_choices_sharing_a_question_score_as_their_whole_sequences(padless, family, options, instruction,
                                                                    monkeypatch):
    """A question runs once and its key-value cache serves each of its choices (and the tokens every question
    begins with, as a chat template's system prompt, run once for all): every choice token's log-probability
    equals the one from the whole sequence, unpadded, and batches mix questions of other lengths. Gemma 3's
    local layers attend within a window shorter than a question."""
    _, tokenizer = padless
    model = make_decoder(family, seed=2, vocab=len(tokenizer), **options)
    items = [encode(tokenizer, f"{instruction} {q}".strip(), " " + c, 64, chat=False)
             for q, choices in zip(QUESTIONS, CHOICES) for c in choices]
    shared = Prefix.common(model, [item.ids[:item.start] for item in items])
    assert (shared is None) if not instruction else len(shared.ids) > 8
    copied = []
    monkeypatch.setattr(Prefix, "copies", lambda self, rows, run=Prefix.copies: copied.append(rows) or run(self, rows))
    firsts = [items[i] for i in itertools.accumulate([0] + [len(c) for c in CHOICES[:-1]])]  # no context shared
    for scored in (items, firsts):
        got = all_logprobs(model, scored, pad_id_of(tokenizer), batch_size=3)
        for item, lp in zip(scored, got, strict=True):
            assert lp.tolist() == pytest.approx(logprobs_one_by_one(model, list(item.ids), item.start), abs=1e-4)
    assert bool(copied) == bool(instruction and "sliding_window" not in options)  # the prefix ran once, then was copied


def test_a_sliding_window_must_span_the_longest_context_and_the_longest_choice_of_a_batch(padless):
    """Every item fits in the window, but a batch pads the long context before the long choice: that needs
    more slots than the window, so the items are scored whole, and right."""
    _, tokenizer = padless
    items = [encode(tokenizer, question, " " + choice, 64, chat=False) for question, choices in
             (("tom walks near the old river", ["a", "the"]), ("anna", ["sees the big dog near the tree", "eats"]))
             for choice in choices]
    longest = max(len(s.ids) for s in items)
    assert max(s.start for s in items) + max(len(s.ids) - s.start for s in items) > longest + 3
    model = make_decoder("gemma3_text", seed=2, vocab=len(tokenizer), sliding_window=longest + 2)
    for item, lp in zip(items, all_logprobs(model, items, pad_id_of(tokenizer), batch_size=8), strict=True):
        assert lp.tolist() == pytest.approx(logprobs_one_by_one(model, list(item.ids), item.start), abs=1e-4)


def greedy_one_by_one(model, tokenizer, prompt: str, limit: int) -> str:
    """At most `limit` greedy tokens after `prompt`, up to the end token, one unpadded forward pass each."""
    ids, answer = tokenizer(prompt)["input_ids"], []
    for _ in range(limit):
        with torch.no_grad():
            token = int(model(input_ids=torch.tensor([ids + answer])).logits[0, -1].argmax())
        if token == tokenizer.eos_token_id:
            break
        answer.append(token)
    return tokenizer.decode(answer, skip_special_tokens=True).strip()


def test_completions_score_loss_per_answer_token_and_greedy_exact_match(padless):
    model, tokenizer = padless
    eos = tokenizer.eos_token_id
    # this model ends its answer to the first two prompts ("bank", "fast red"), and not to the others'
    rows = [{"prompt": "the dog mat blue", "completion": "bank"}, {"prompt": "green runs eats river",
                                                                  "completion": " fast red "},
            {"prompt": "the cat sat on the", "completion": "mat"}, {"prompt": "anna sees a big", "completion": "dog"}]
    total, count, expected = 0.0, 0, []
    for row in rows:
        context = tokenizer(row["prompt"])["input_ids"]
        answer = tokenizer(" " + row["completion"].strip(), add_special_tokens=False)["input_ids"]
        scored = logprobs_one_by_one(model, context + answer + [eos], len(context))
        total, count = total - sum(scored), count + len(scored)
        expected.append(greedy_one_by_one(model, tokenizer, row["prompt"], len(answer) + 1))
    result = score_decoder(model, tokenizer, COMPLETION, rows, batch_size=3)
    assert result["loss_per_token"] == pytest.approx(total / count, rel=1e-5)
    assert result["tokens"] == count
    assert result["predictions"] == expected
    assert expected[:2] == ["bank", "fast red"] and result["exact_match"] == 0.5


def test_a_chat_template_frames_the_prompt_with_no_second_bos():
    tokenizer = make_decoder_tokenizer(pad=False)
    tokenizer.chat_template = ("{% for m in messages %}<s> anna sees {{ m['content'] }}{% endfor %}"
                               "{% if add_generation_prompt %} tom {% endif %}")
    from transmod.train.lmscore import context_text

    context = context_text(tokenizer, "the cat", chat=True)
    assert context == "<s> anna sees the cat tom "
    scored = encode(tokenizer, context, "mat", 64, chat=True)
    assert scored.ids.count(tokenizer.bos_token_id) == 1 and scored.ids[scored.start:] == (
        tokenizer.convert_tokens_to_ids("mat"),)
    assert context_text(tokenizer, "the cat", chat=False) == "the cat"


def test_a_long_context_loses_its_start_but_keeps_the_bos():
    tokenizer = make_decoder_tokenizer(pad=False)
    scored = encode(tokenizer, " ".join(["the cat"] * 20), "mat river", 10, chat=False, end=True)
    assert len(scored.ids) == 10 and scored.ids[0] == tokenizer.bos_token_id
    assert scored == Scored(scored.ids, 7) and scored.ids[-1] == tokenizer.eos_token_id


@pytest.mark.parametrize("row, expected", [
    ({"question": "the cat", "choices": ["mat"], "answer": 0}, "column 'choices' must be a list of at least two"),
    ({"question": "the cat", "choices": ["mat", "dog"], "answer": 2}, "column 'answer' must be a choice index"),
    ({"question": " ", "choices": ["mat", "dog"], "answer": 0}, "column 'question' must be a non-empty string"),
])
def test_a_bad_row_is_refused_naming_it(padless, row, expected):
    with pytest.raises(TransmodError, match=re.escape(expected)):
        score_decoder(*padless, CHOICE, [row])


def test_a_decoder_task_declaration_is_checked():
    with pytest.raises(TransmodError, match=r"tasks\.mc\.choices_column: a multiple-choice task names the column"):
        declare_task("mc", dict(kind="multiple-choice", text_columns=["q"], label_column="a", metric="accuracy"))
    with pytest.raises(TransmodError, match=r"tasks\.qa\.metric: accuracy .* does not score a completion task"):
        declare_task("qa", dict(kind="completion", text_columns=["p"], label_column="c", metric="accuracy"))
    with pytest.raises(TransmodError, match=r"tasks\.qa\.choices_column: only a multiple-choice task"):
        declare_task("qa", dict(kind="completion", text_columns=["p"], label_column="c", metric="exact_match",
                                choices_column="x"))


def test_the_command_scores_a_model_with_and_without_its_lora(tmp_path, capsys, padless):
    model, tokenizer = padless
    folder = save_decoder(model, tmp_path / "model", tokenizer)
    lora = peft_lora(model, tmp_path / "lora", task_type="CAUSAL_LM")
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps({"question": q, "choices": c, "answer": 1}) + "\n"
                            for q, c in zip(QUESTIONS, CHOICES)))
    code, out, err = run_cli(capsys, "evaluate", "--model", folder, "--task", "multiple-choice", "--data", data)
    assert code == 0, err
    assert re.search(r"on 4 examples of .*mc\.jsonl: accuracy \d\.\d{4}$", out.strip())
    code, out, err = run_cli(capsys, "evaluate", "--model", folder, "--module", tmp_path / "lora", "--task",
                             "multiple-choice", "--data", data, "--out", tmp_path / "scores.json")
    assert code == 0, err
    written = json.loads((tmp_path / "scores.json").read_text())
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    independent = score_decoder(load_peft(model, tmp_path / "lora"), tokenizer, CHOICE, rows, batch_size=1)
    assert written["predictions"] == independent["predictions"] and written["module"] == str(tmp_path / "lora")
    assert lora is not None
    code, _, err = run_cli(capsys, "evaluate", "--model", folder, "--task", "completion", "--data", data)
    assert code == 2 and err.count("\n") == 1 and "column 'prompt' must be a non-empty string" in err
    assert str(data) in err
    (tmp_path / "notes.json").write_text("mine")
    code, _, err = run_cli(capsys, "evaluate", "--model", folder, "--task", "multiple-choice", "--data", data,
                           "--out", tmp_path / "notes.json", "--overwrite")
    assert code == 2 and "not a transmod output" in err and (tmp_path / "notes.json").read_text() == "mine"
