"""Metrics from predictions files: entity-level F1 (conlleval, as seqeval) for NER, accuracy for PI/NLI."""

from __future__ import annotations

import json

import pytest

from transmod.errors import TransmodError
from transmod.train.evaluation import get_entities, score, score_lists, write_metrics


def write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_entity_f1_on_a_known_example(tmp_path):
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-MISC", "I-MISC"]]
    pred = [["B-PER", "I-PER", "O", "O"],  # PER right, LOC missed
            ["B-LOC", "O", "B-MISC", "I-MISC"]]  # ORG typed wrong (a false positive and a miss), MISC right
    # gold entities: PER, LOC, ORG, MISC (4); predicted: PER, LOC, MISC (3); correct: PER, MISC (2)
    path = write(tmp_path / "p.json", {"task": "ner", "predictions": pred, "gold": gold})
    m = score("ner", path)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2))
    assert m["metric"] == "f1" and m["score"] == m["f1"] and m["n"] == 2


def test_entity_boundaries_count():
    # a partly found entity is wrong at the entity level
    m = score_lists("ner", [["B-PER", "O"]], [["B-PER", "I-PER"]])
    assert m["f1"] == 0.0
    assert score_lists("ner", [["O", "O"]], [["O", "O"]])["f1"] == 0.0  # no entities: 0, not an error


def test_lenient_chunk_rules_as_conlleval():
    # expected values as seqeval 1.2.2 gives them; offsets count one 'O' between sentences
    gold = [["B-PER", "I-PER", "O"], ["B-LOC", "O", "S-ORG"], ["B-PER", "I-PER"], ["O", "B-LOC"], ["I-LOC"]]
    pred = [["I-PER", "E-PER", "O"],  # I- after O starts PER, E- ends it: PER 0-1, right
            ["I-LOC", "O", "B-ORG"],  # after the separator (3) I-LOC starts LOC 4-4; a lone B- ends as S- does: right
            ["B-PER", "I-LOC"],  # a type change ends PER and starts LOC: PER 8-8 and LOC 9-9, both wrong
            ["O", "I-LOC"], ["I-LOC"]]  # LOC 12-12 and 14-14: the sentence boundary (13) keeps them apart, right
    assert get_entities(gold) == [("PER", 0, 1), ("LOC", 4, 4), ("ORG", 6, 6), ("PER", 8, 9),
                                  ("LOC", 12, 12), ("LOC", 14, 14)]
    assert get_entities(pred) == [("PER", 0, 1), ("LOC", 4, 4), ("ORG", 6, 6), ("PER", 8, 8), ("LOC", 9, 9),
                                  ("LOC", 12, 12), ("LOC", 14, 14)]
    m = score_lists("ner", pred, gold)  # 5 right of 7 predicted and 6 gold entities
    assert m["precision"] == pytest.approx(5 / 7) and m["recall"] == pytest.approx(5 / 6)
    assert m["f1"] == pytest.approx(10 / 13)  # 2PR / (P + R) = (50/42) / (65/42)
    # IOBES: S- is one entity and an E- after it starts another; a label without a prefix reads its first character
    # as the tag and the rest as the type, as seqeval does ('PER' is tag 'P', type 'ER')
    assert get_entities([["B-ORG", "E-ORG", "S-PER", "E-PER"]]) == [("ORG", 0, 1), ("PER", 2, 2), ("PER", 3, 3)]
    assert get_entities([["PER", "PER", "O", "LOC"]]) == [("ER", 0, 1), ("OC", 3, 3)]


def test_accuracy(tmp_path):
    path = write(tmp_path / "p.json", {"task": "nli", "predictions": [0, 1, 1, 2], "gold": [0, 1, 2, 2]})
    m = score("nli", path)
    assert m["accuracy"] == 0.75 and m["score"] == 0.75 and m["metric"] == "accuracy"
    assert score("pi", {"task": "pi", "predictions": [1, 0], "gold": [1, 1]})["accuracy"] == 0.5


@pytest.mark.parametrize("content", [
    "not json",
    json.dumps([1, 2]),
    json.dumps({"task": "pi", "predictions": [0, 1]}),
    json.dumps({"task": "pos", "predictions": [0], "gold": [0]}),
    json.dumps({"task": "pi", "predictions": [0, 1], "gold": [0]}),
    json.dumps({"task": "pi", "predictions": ["a"], "gold": [0]}),
    json.dumps({"task": "ner", "predictions": [["O"]], "gold": [["O", "B-PER"]]}),
    json.dumps({"task": "ner", "predictions": [], "gold": []}),
])
def test_malformed_predictions_are_refused(tmp_path, content):
    path = tmp_path / "bad_predictions.json"
    path.write_text(content)
    with pytest.raises(TransmodError, match="bad_predictions.json"):
        score("pi", path)


def test_missing_file_and_wrong_task(tmp_path):
    with pytest.raises(TransmodError, match="absent.json"):
        score("pi", tmp_path / "absent.json")
    path = write(tmp_path / "p.json", {"task": "pi", "predictions": [0], "gold": [0]})
    with pytest.raises(TransmodError, match="'nli'"):
        score("nli", path)


def test_write_metrics_includes_run_info(tmp_path):
    pred = write(tmp_path / "p.json", {"task": "pi", "predictions": [1, 0, 1], "gold": [1, 0, 0],
                                       "best_epoch": 2, "best_val_metric": 0.5})
    out = tmp_path / "metrics" / "m.json"
    run = {"pair": "matching", "lang": "de", "seed": 1, "config": {"learning_rate": 1e-5}, "path": tmp_path}
    write_metrics(pred, out, run)
    m = json.loads(out.read_text())
    assert m["accuracy"] == pytest.approx(2 / 3) and m["task"] == "pi" and m["best_epoch"] == 2
    assert m["run"]["pair"] == "matching" and m["run"]["config"]["learning_rate"] == 1e-5
    assert m["run"]["path"] == str(tmp_path)
    assert [p.name for p in out.parent.iterdir()] == ["m.json"]  # no temp file left behind


def test_the_metrics_curve_takes_the_runs_training_seconds_and_a_bad_timing_file_is_refused(tmp_path):
    """timing.json (the one file of a run that differs when it is run again) adds seconds to the curve."""
    from transmod.train.evaluation import write_metrics

    run = tmp_path / "run"
    run.mkdir()
    (run / "test_predictions.json").write_text(json.dumps({
        "task": "pi", "predictions": [1, 0], "gold": [1, 1], "curve": [{"step": 3, "val": 0.5}, {"step": 6, "val": 0.75}]}))
    metrics = write_metrics(run / "test_predictions.json", tmp_path / "m.json", {}, "pi")
    assert metrics["curve"] == [{"step": 3, "val": 0.5}, {"step": 6, "val": 0.75}]  # no timing file: steps only
    (run / "timing.json").write_text(json.dumps({"epoch_seconds": [1.5, 3.0]}))
    metrics = write_metrics(run / "test_predictions.json", tmp_path / "m.json", {}, "pi")
    assert metrics["curve"] == [{"step": 3, "val": 0.5, "seconds": 1.5}, {"step": 6, "val": 0.75, "seconds": 3.0}]
    (run / "timing.json").write_text(json.dumps({"epoch_seconds": [1.5, float("nan")]}))
    with pytest.raises(TransmodError, match="timing.json: epoch_seconds must be 2 finite non-negative numbers"):
        write_metrics(run / "test_predictions.json", tmp_path / "m2.json", {}, "pi")
    assert not (tmp_path / "m2.json").exists()
