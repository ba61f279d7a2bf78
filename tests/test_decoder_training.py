"""A decoder LLM's LoRA trained on a completion or multiple-choice task (transmod.train.decoder through the encoder
loop): the loss reads the answer's tokens only, training learns a learnable task, the written LoRA is what peft
loads and `transmod evaluate` scores as the run's own predictions, and a run resumes from a given LoRA."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest
from helpers.commands import run_cli
from helpers.decoders import make_decoder, make_decoder_tokenizer, save_decoder

from transmod.errors import TransmodError
from transmod.train.batching import IGNORE_INDEX
from transmod.train.config import TrainConfig
from transmod.train.decoder import training_example
from transmod.train.tasks import declare_task
from transmod.train.training import train

CHOICE = declare_task("mc", dict(kind="multiple-choice", text_columns=["question"], choices_column="choices",
                                 label_column="answer", metric="accuracy"))
COMPLETION = declare_task("qa", dict(kind="completion", text_columns=["prompt"], label_column="completion",
                                     metric="exact_match"))
WORDS = "the a cat dog sat on house red blue green big small runs walks sees eats bird tree".split()


def mc_rows(n: int, seed: int) -> list[dict]:
    """Questions of random words whose right choice is always `mat`, in a random place among two others."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        choices = ["mat", *rng.sample(["river", "paris", "bank", "city"], 2)]
        rng.shuffle(choices)
        rows.append({"question": " ".join(rng.choices(WORDS, k=4)), "choices": choices, "answer": choices.index("mat")})
    return rows


@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
    tokenizer = make_decoder_tokenizer(pad=False)  # as Llama's: no pad token
    folder = tmp_path_factory.mktemp("decoder") / "model"
    return save_decoder(make_decoder("llama", seed=1, vocab=len(tokenizer)), folder, tokenizer), tokenizer


def config(**kw) -> TrainConfig:
    values = dict(learning_rate=1e-2, batch_size=8, epochs=3, max_length=32, seed=3, warmup_ratio=0.0,
                  modules={"lora": {"r": 4, "alpha": 8}})
    return TrainConfig.from_dict({**values, **kw}, source="test")


def test_the_lm_head_runs_only_where_a_row_has_an_answer_token(decoder):
    """The training loss from logits at the answer positions alone equals the loss from every position's."""
    import torch

    from transmod.train.batching import collate
    from transmod.train.runtime import token_loss
    from transmod.train.training import _batch_loss

    _, tokenizer = decoder
    model = make_decoder("llama", seed=4, vocab=len(tokenizer))
    batch = collate([training_example(tokenizer, CHOICE, row, i, 32) for i, row in enumerate(mc_rows(5, seed=2))],
                    pad_token_id=0)
    assert (batch["labels"] == IGNORE_INDEX).all(0).any()  # some positions need no logits
    run = SimpleNamespace(keys=("input_ids", "attention_mask"), dev=SimpleNamespace(device=torch.device("cpu")),
                          model=model, decoder=True)  # the fields of a `_Run` that the loss reads
    with torch.no_grad():
        full = token_loss(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                          batch["labels"])
        assert float(_batch_loss(run, batch)) == pytest.approx(float(full), rel=1e-5)


def test_the_labels_are_the_answers_tokens_shifted_one_left(decoder):
    _, tokenizer = decoder
    example = training_example(tokenizer, COMPLETION, {"prompt": "the cat sat", "completion": "on a mat"}, 0, 32)
    ids, labels = example["input_ids"], example["labels"]
    answer = tokenizer(" on a mat", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert ids[-len(answer):] == answer and ids[0] == tokenizer.bos_token_id
    start = len(ids) - len(answer)
    assert labels[:start - 1] == [IGNORE_INDEX] * (start - 1)  # the prompt teaches nothing
    assert labels[start - 1:-1] == answer and labels[-1] == IGNORE_INDEX
    mc = training_example(tokenizer, CHOICE, {"question": "the cat", "choices": ["dog", "mat"], "answer": 1}, 0, 32)
    assert [t for t in mc["labels"] if t != IGNORE_INDEX] == [tokenizer.convert_tokens_to_ids("mat"),
                                                             tokenizer.eos_token_id]
    with pytest.raises(TransmodError, match="row 4: column 'choices' must be a list of at least two"):
        training_example(tokenizer, CHOICE, {"question": "the cat", "choices": ["dog"], "answer": 1}, 4, 32)


def test_a_lora_learns_a_multiple_choice_task_and_evaluate_scores_what_it_wrote(decoder, tmp_path, capsys):
    folder, _ = decoder
    splits = mc_rows(64, 0), mc_rows(24, 1), mc_rows(24, 2)
    summary = train(folder, CHOICE, "lora", *splits, config(), tmp_path / "run", score_start=True)
    accuracies = [e["val_accuracy"] for e in summary["epochs"]]
    assert summary["best_val_metric"] == max(accuracies) == 1.0
    predictions = json.loads((tmp_path / "run" / "test_predictions.json").read_text())
    assert predictions["gold"] == [r["answer"] for r in splits[2]]
    test_accuracy = sum(p == g for p, g in zip(predictions["predictions"], predictions["gold"])) / 24
    assert test_accuracy == 1.0
    assert (tmp_path / "run" / "module" / "adapter_model.safetensors").is_file()
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "head.safetensors"), framework="pt") as head:
        assert list(head.keys()) == []  # a decoder answers through its own, frozen, LM head
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in splits[2]))
    code, _, err = run_cli(capsys, "evaluate", "--model", folder, "--task", "multiple-choice", "--data", data,
                           "--out", tmp_path / "alone.json")
    assert code == 0, err
    assert json.loads((tmp_path / "alone.json").read_text())["accuracy"] < 0.8  # the model alone has not learnt it
    code, _, err = run_cli(capsys, "evaluate", "--model", folder, "--module", tmp_path / "run" / "module", "--task",
                           "multiple-choice", "--data", data, "--out", tmp_path / "with.json")
    assert code == 0, err
    assert json.loads((tmp_path / "with.json").read_text())["predictions"] == predictions["predictions"]
    # the start's test score (the tables' zero-shot columns read it): here the model alone
    assert summary["start_test"]["accuracy"] == json.loads((tmp_path / "alone.json").read_text())["accuracy"]
    assert predictions["start_score"] == summary["start_test"]["accuracy"]


def test_a_zero_shot_run_trains_nothing_and_scores_the_lora_as_it_is(decoder, tmp_path):
    """A decoder has no head: its zero-shot run (`freeze_module`, a `zs-` init) is its start, scored and written."""
    from safetensors.torch import load_file

    folder, _ = decoder
    splits = mc_rows(64, 0), mc_rows(24, 1), mc_rows(24, 2)
    trained = train(folder, CHOICE, "lora", *splits, config(epochs=2), tmp_path / "run")
    zero = train(folder, CHOICE, "lora", *splits, config(freeze_module=True), tmp_path / "zs",
                 init_module=tmp_path / "run" / "module")
    assert zero["best_epoch"] == 0 and [e["train_loss"] for e in zero["epochs"]] == [None]
    assert zero["best_val_metric"] == trained["best_val_metric"]
    read = [json.loads((tmp_path / run / "test_predictions.json").read_text()) for run in ("run", "zs")]
    assert read[1]["predictions"] == read[0]["predictions"]
    accuracy = sum(p == g for p, g in zip(read[0]["predictions"], read[0]["gold"])) / len(read[0]["gold"])
    assert read[1]["start_score"] == zero["start_test"]["accuracy"] == accuracy  # its start is its end
    assert "start_test" not in trained and "start_score" not in read[0]  # scored only where asked (the teacher's)
    before, after = (load_file(str(tmp_path / run / "module" / "adapter_model.safetensors")) for run in ("run", "zs"))
    assert before.keys() == after.keys() and all(before[k].equal(after[k]) for k in before)  # written as it came
    alone = train(folder, CHOICE, "lora", *splits, config(freeze_module=True), tmp_path / "alone")
    again = train(folder, CHOICE, "lora", *splits, config(epochs=1), tmp_path / "again", score_start=True)
    assert alone["start_test"] == again["start_test"]  # a fresh LoRA's B is zero: the model alone


def test_a_run_from_a_given_lora_starts_where_it_ended(decoder, tmp_path):
    folder, _ = decoder
    rows = [{"prompt": " ".join(random.Random(i).choices(WORDS, k=3)), "completion": "paris"} for i in range(40)]
    first = train(folder, COMPLETION, "lora", rows[:24], rows[24:32], rows[32:], config(epochs=8), tmp_path / "a")
    assert first["epochs"][-1]["val_loss_per_token"] < first["epochs"][0]["val_loss_per_token"]
    assert first["best_val_metric"] == 1.0  # every greedy answer is `paris`, ended
    again = train(folder, COMPLETION, "lora", rows[:24], rows[24:32], rows[32:], config(epochs=1, learning_rate=1e-9),
                  tmp_path / "b", init_module=tmp_path / "a" / "module")
    assert again["epochs"][0]["val_exact_match"] == 1.0
    fresh = train(folder, COMPLETION, "lora", rows[:24], rows[24:32], rows[32:], config(epochs=1, learning_rate=1e-9),
                  tmp_path / "c")
    assert fresh["epochs"][0]["val_exact_match"] == 0.0


PAIRS = declare_task("pairs", dict(kind="sequence-classification", text_columns=["a", "b"], text_pair=True,
                                   label_column="label", metric="accuracy", labels=["river", "mat"]))  # words of the vocabulary


def pair_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"a": " ".join(rng.choices(WORDS, k=3)), "b": " ".join(rng.choices(WORDS, k=3)), "label": 0}
            for _ in range(n)]  # always "river"


def test_a_built_in_sentence_pair_task_runs_on_a_decoder_by_its_label_words(decoder, tmp_path):
    """nli as built in (a text pair: premise and hypothesis): its multiple-choice view keeps the task's name and
    drops the pair, and the run's predictions are its label ids."""
    folder, _ = decoder
    rng = random.Random(5)
    rows = [{"premise": " ".join(rng.choices(WORDS, k=4)), "hypothesis": " ".join(rng.choices(WORDS, k=3)),
             "label": i % 3} for i in range(12)]
    train(folder, "nli", "lora", rows[:6], rows[6:9], rows[9:], config(epochs=1), tmp_path / "nli")
    predictions = json.loads((tmp_path / "nli" / "test_predictions.json").read_text())
    assert predictions["labels"] == ["entailment", "neutral", "contradiction"]
    assert set(predictions["predictions"]) <= {0, 1, 2} and predictions["gold"] == [0, 1, 2]


def test_a_decoder_answers_a_classification_task_by_its_label_words(decoder, tmp_path):
    """A sentence-pair task on a decoder: each row a multiple choice of the label names; predictions are label ids,
    scored by the task's metric; the LoRA learns which word fits."""
    from transmod.train.decoder import choice_view, label_word_rows
    from transmod.train.lmscore import load_decoder, score_choices

    folder, _ = decoder
    splits = pair_rows(48, 0), pair_rows(16, 1), pair_rows(16, 2)
    summary = train(folder, PAIRS, "lora", *splits, config(), tmp_path / "run", score_start=True)
    assert summary["start_test"]["accuracy"] < 1.0 and summary["best_val_metric"] == 1.0
    predictions = json.loads((tmp_path / "run" / "test_predictions.json").read_text())
    assert predictions["labels"] == ["river", "mat"] and predictions["predictions"] == [0] * 16
    rows = label_word_rows(PAIRS, splits[2], ["river", "mat"])
    assert rows[0]["question"] == f"{splits[2][0]['a']}\n{splits[2][0]['b']}\nWhich fits: river, mat?"
    model, tokenizer = load_decoder(str(folder), str(tmp_path / "run" / "module"))
    assert score_choices(model, tokenizer, choice_view(PAIRS), rows)["predictions"] == predictions["predictions"]
    with pytest.raises(TransmodError, match="row 1: column 'label' must be a label id from 0 to 1, got 2"):
        label_word_rows(PAIRS, [splits[2][0], {**splits[2][1], "label": 2}], ["river", "mat"])
    with pytest.raises(TransmodError, match="not a token-classification task"):
        train(folder, "ner", "lora", [{"tokens": ["a"], "ner_tags": [0]}], [], [], config(), tmp_path / "ner")
