"""Test-set metrics from a predictions file, so evaluation needs no model (docs/method.md, section 9).

Token tasks are scored per word (the label of its first sub-token): entity-level micro
precision/recall/F1 (conlleval chunk rules, exactly as seqeval 1.2.2's default mode) when the task's
metric is `f1`, else word accuracy, macro-F1 and Matthews correlation. Sequence tasks: accuracy,
macro-F1 and Matthews correlation; multiple choice the same over choice indices; completions the exact match of
the greedy answer. No scikit-learn: transformers would import it in every process.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transmod.atomic import atomic_path
from transmod.errors import TransmodError
from transmod.train.files import TIMING_FILE
from transmod.train.tasks import COMPLETION, Task, get_task


def score_lists(task: Task | str, predictions: Sequence, gold: Sequence) -> dict[str, float]:
    """Metrics of predictions against gold labels (label-name lists per sentence for token tasks, class ids otherwise)."""
    spec = get_task(task)
    if len(predictions) != len(gold):
        raise ValueError(f"{len(predictions)} predictions for {len(gold)} gold examples")
    if spec.kind == COMPLETION:  # answers as text: right when equal (both stripped)
        return {"exact_match": sum(p == g for p, g in zip(predictions, gold)) / max(1, len(gold)), "n": len(gold)}
    if spec.is_token and spec.metric == "f1":
        return {**entity_scores(predictions, gold), "n": len(gold)}
    n = len(gold)
    if spec.is_token:  # every word counts once
        if any(len(p) != len(g) for p, g in zip(predictions, gold)):
            raise ValueError("predictions and gold must have the same number of labels per sentence")
        predictions = [label for sentence in predictions for label in sentence]
        gold = [label for sentence in gold for label in sentence]
    return {**class_scores(predictions, gold), "n": n}


def class_scores(predictions: Sequence, gold: Sequence) -> dict[str, float]:
    """Accuracy, macro-F1 (over the classes in gold or predictions) and multi-class Matthews correlation
    (Gorodkin's R_K), as scikit-learn computes them, 0.0 where undefined."""
    import numpy as np

    classes = sorted(set(gold) | set(predictions), key=str)
    index = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    np.add.at(confusion, ([index[g] for g in gold], [index[p] for p in predictions]), 1.0)
    total, correct = confusion.sum(), np.trace(confusion)
    true, pred = confusion.sum(axis=1), confusion.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(true + pred > 0, 2 * np.diag(confusion) / (true + pred), 0.0)
    denom = np.sqrt((total**2 - pred @ pred) * (total**2 - true @ true))
    return {"accuracy": float(correct / total) if total else 0.0,
            "macro_f1": float(f1.mean()) if len(classes) else 0.0,
            "matthews": float((correct * total - pred @ true) / denom) if denom else 0.0}


def entity_scores(predictions: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level micro precision, recall and F1, 0.0 where a denominator is 0.

    The same numbers as seqeval 1.2.2's default (conlleval-style) mode with zero_division=0, computed
    here because seqeval imports scikit-learn, which transformers then imports in every process.
    """
    if len(predictions) != len(gold) or any(len(p) != len(g) for p, g in zip(predictions, gold)):
        raise ValueError("predictions and gold must have the same number of sentences and of labels per sentence")
    true, pred = set(get_entities(gold)), set(get_entities(predictions))
    tp = len(true & pred)
    precision = tp / len(pred) if pred else 0.0
    recall = tp / len(true) if true else 0.0
    denom = precision + recall
    f1 = 2.0 * precision * recall / denom if denom else 0.0  # seqeval's order of operations: equal floats
    return {"f1": f1, "precision": precision, "recall": recall}


def get_entities(sentences: Sequence[Sequence[str]]) -> list[tuple[str, int, int]]:
    """(type, first, last) of each entity, as seqeval's `get_entities`: sentences joined by an 'O'.

    A label's first character is its tag (B, I, E, S, O; any other acts as a tag with no rule of its
    own) and what follows the next '-' (or the whole rest, '_' if empty) its type: 'PER' is 'P' + 'ER'.
    """
    labels = [label for sentence in sentences for label in [*sentence, "O"]]
    chunks = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, label in enumerate([*labels, "O"]):
        tag, type_ = label[0], label[1:].split("-", maxsplit=1)[-1] or "_"
        if _end_of_chunk(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _start_of_chunk(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """Whether an entity ended before the current label (seqeval's `end_of_chunk`)."""
    return (prev_tag in ("E", "S")
            or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
            or (prev_tag not in ("O", ".") and prev_type != type_))


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """Whether an entity starts at the current label (seqeval's `start_of_chunk`): I- or E- after O also starts one."""
    return (tag in ("B", "S")
            or (prev_tag in ("E", "S", "O") and tag in ("E", "I"))
            or (tag not in ("O", ".") and prev_type != type_))


def read_predictions(path: str | Path) -> dict[str, Any]:
    """Read and check a test_predictions.json written by `transmod.train.training.train`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TransmodError(f"{path}: no such predictions file; run the training job that writes it") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TransmodError(f"{path}: not valid JSON ({exc}); re-run the training job that writes it") from None
    _check_predictions(data, path)
    return data


def _check_predictions(data: Any, path: Path | str) -> None:
    fix = "re-run the training job that writes it"
    if not isinstance(data, dict):
        raise TransmodError(f"{path}: a predictions file holds a JSON object; {fix}")
    for key in ("task", "predictions", "gold"):
        if key not in data:
            raise TransmodError(f"{path}: missing key {key!r}; {fix}")
    pred, gold = data["predictions"], data["gold"]
    if not isinstance(pred, list) or not isinstance(gold, list) or len(pred) != len(gold):
        raise TransmodError(f"{path}: keys 'predictions' and 'gold' must be lists of the same length; {fix}")
    if not gold:
        raise TransmodError(f"{path}: key 'gold' is empty (an empty test set); give a non-empty test split")


def _check_kind(data: dict, task: Task, path: Path | str) -> None:
    """Label-name lists per sentence (token tasks) or integer class ids (sequence tasks)."""
    fix = "re-run the training job that writes it"
    if data["task"] != task.name:
        raise TransmodError(f"{path}: predictions are for task {data['task']!r}, not {task.name!r}; pass the matching file")
    pred, gold = data["predictions"], data["gold"]
    if task.is_token:
        for i, (p, g) in enumerate(zip(pred, gold)):
            if (not isinstance(p, list) or not isinstance(g, list) or len(p) != len(g)
                    or not all(isinstance(t, str) for t in p + g)):
                raise TransmodError(
                    f"{path}: sentence {i} of 'predictions'/'gold' must be lists of label names of equal length; {fix}"
                )
    elif task.kind == COMPLETION:
        if not all(isinstance(v, str) for v in pred + gold):
            raise TransmodError(f"{path}: keys 'predictions' and 'gold' must hold answer texts for {task.name}; {fix}")
    elif not all(isinstance(v, int) and not isinstance(v, bool) for v in pred + gold):
        raise TransmodError(f"{path}: keys 'predictions' and 'gold' must hold integer class ids for {task.name}; {fix}")


def score(task: Task | str, predictions_json: str | Path | dict) -> dict[str, Any]:
    """Metrics of a predictions file (or its parsed content), by the task's kind and metric.

    The result also names the primary metric (`metric`) and repeats its value as `score`, so tables
    can read every task the same way.
    """
    spec = get_task(task)
    if isinstance(predictions_json, dict):
        data, source = predictions_json, "the predictions"
        _check_predictions(data, source)
    else:
        data, source = read_predictions(predictions_json), str(predictions_json)
    _check_kind(data, spec, source)
    result = score_lists(spec, data["predictions"], data["gold"])
    return {"task": spec.name, "metric": spec.metric, "score": result[spec.metric], **result}


def write_metrics(pred_path: str | Path, out_path: str | Path, run_info: dict[str, Any],
                  task: Task | str | None = None) -> dict[str, Any]:
    """Score a predictions file and write metrics JSON (atomically) with the run's config under `run`
    (`task`: its declaration; default: the built-in task the file names)."""
    data = read_predictions(pred_path)
    metrics = score(data["task"] if task is None else task, data)
    metrics["run"] = _jsonable(run_info)
    for key in ("best_epoch", "best_val_metric", "start_score", "curve", "environment"):
        if key in data:
            metrics[key] = data[key]
    seconds = _epoch_seconds(Path(pred_path).with_name(TIMING_FILE), len(metrics.get("curve", [])))
    if seconds is not None:
        metrics["curve"] = [{**point, "seconds": s} for point, s in zip(metrics["curve"], seconds)]
    with atomic_path(out_path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return metrics


def _epoch_seconds(path: Path, epochs: int) -> list[float] | None:
    """The training seconds at each epoch's end that the run recorded beside its predictions (None: no such file,
    as from a run of an older transmod); checked, since the steps table reads them."""
    if not path.is_file():
        return None
    try:
        seconds = json.loads(path.read_text(encoding="utf-8"))["epoch_seconds"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TransmodError(f"{path}: not a timing file of transmod ({exc!r}); re-run the training job") from None
    if (not isinstance(seconds, list) or len(seconds) != epochs or
            not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0
                    for x in seconds)):
        raise TransmodError(f"{path}: epoch_seconds must be {epochs} finite non-negative numbers, one per epoch; "
                            "re-run the training job")
    return [float(x) for x in seconds]


def _jsonable(value: Any) -> Any:
    """Run info as plain JSON (paths and tuples become strings and lists; NaN becomes null)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
