"""A decoder LLM's run: a peft LoRA on all seven projections of every layer, trained on the answers of a
completion or multiple-choice task (a multiple-choice row teaches its right choice as the answer), scored
each epoch and at the end by `lmscore`. The encoder loop does the rest: its batching, schedule, precision,
checkpoints, patience and progress lines; the labels are shifted here, so that the loss reads position t's
prediction against token t + 1 as it reads a classifier's, and is taken on the answer's tokens only."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from transmod.errors import TransmodError
from transmod.modules.architectures import DECODER_SITES
from transmod.train.batching import IGNORE_INDEX, Example
from transmod.train.config import TrainConfig
from transmod.train.lmscore import (
    answer_of,
    context_text,
    continuation,
    encode,
    load_decoder,
    prompt_of,
    score_decoder,
    text_of,
    with_lora,
)
from transmod.train.tasks import CHOICE, Task

CHAT = True  # a chat template frames every prompt where the tokenizer has one (as `transmod evaluate` does)


def choice_view(task: Task) -> Task:
    """How a decoder reads a sentence (pair) classification task: a multiple-choice task over its label words (a
    view of the task itself: a built-in's declaration, text pair and all, is not read again)."""
    return replace(task, kind=CHOICE, text_columns=("question",), text_pair=False, choices_column="choices",
                   label_column="answer", metric="accuracy", labels=None)


def label_word_rows(task: Task, rows: Sequence[Mapping[str, Any]], words: Sequence[str]) -> list[dict[str, Any]]:
    """A classification task's rows as `choice_view` questions: the text (or the pair, a line each) and the
    question which label word fits; the choices are the label words (the task's label names), the answer
    the label id. The decoder scores them as any choice, so its prediction is a label id."""
    out = []
    for i, row in enumerate(rows):
        texts = [text_of(row, column, i) for column in task.text_columns]
        label = row.get(task.label_column)
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(words):
            raise TransmodError(f"row {i}: column {task.label_column!r} must be a label id from 0 to "
                                f"{len(words) - 1}, got {label!r}; fix the data")
        out.append({"question": "\n".join(texts) + f"\nWhich fits: {', '.join(words)}?", "choices": list(words),
                    "answer": label})
    return out


def training_example(tokenizer: Any, task: Task, row: Mapping[str, Any], index: int, max_length: int) -> Example:
    """A row as ids, with labels on the answer's tokens (and its end token), shifted one to the left."""
    context = context_text(tokenizer, prompt_of(task, row, index), CHAT)
    scored = encode(tokenizer, context, continuation(context, answer_of(task, row, index)), max_length, CHAT, end=True)
    ids = list(scored.ids)
    labels = [IGNORE_INDEX] * len(ids)
    labels[scored.start - 1:len(ids) - 1] = ids[scored.start:]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def build_decoder(model_path: str | os.PathLike, cfg: TrainConfig, init_module: str | os.PathLike | None,
                  ) -> tuple[torch.nn.Module, Any]:
    """The frozen decoder with a trainable LoRA: fresh (the config's rank, alpha and dropout; its A drawn from
    the seed, its B zero, as peft starts one) or the peft LoRA folder `init_module`, trained on from there.
    With `cfg.freeze_module` (a zero-shot run) nothing trains: a decoder has no head, so the run scores its
    start as it is (a fresh LoRA's B is zero: the model alone)."""
    import peft

    torch.manual_seed(cfg.seed)
    model, tokenizer = load_decoder(str(model_path))
    if init_module is not None:
        model = with_lora(model, str(init_module), trainable=True)
    else:
        options = cfg.module_options("lora")
        config = peft.LoraConfig(r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
                                 target_modules=list(DECODER_SITES), task_type="CAUSAL_LM")
        model = peft.get_peft_model(model, config)
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name and not cfg.freeze_module)
    return model, tokenizer


def scorer(model: torch.nn.Module, tokenizer: Any, task: Task, rows: Mapping[str, Sequence[Mapping[str, Any]]],
           cfg: TrainConfig, metric_task: Task | None = None) -> Callable[[str], tuple[dict[str, float], list]]:
    """A split's scores (the task's metric, and the loss per answer token of a completion task) and predictions;
    `metric_task`: the classification task whose label words `task` (its `choice_view`) asks, and whose metric
    (accuracy, macro-F1, Matthews) scores the predicted label ids."""
    from transmod.train.evaluation import score_lists

    def score(split: str) -> tuple[dict[str, float], list]:
        was_training = model.training
        result = score_decoder(model, tokenizer, task, rows[split], batch_size=cfg.eval_batch_size,
                               max_length=cfg.max_length, chat=CHAT)
        model.train(was_training)
        if metric_task is not None:
            result.update(score_lists(metric_task, result["predictions"], gold(task, rows[split])))
        return {k: v for k, v in result.items() if isinstance(v, float)}, result["predictions"]

    return score


def gold(task: Task, rows: Sequence[Mapping[str, Any]]) -> list:
    """The gold answers in the predictions' format: the completion's text, or the right choice's index."""
    return [r[task.label_column].strip() if isinstance(r[task.label_column], str) else r[task.label_column]
            for r in rows]


def save_lora(model: torch.nn.Module, folder: Path) -> None:
    """The LoRA in peft's format (safetensors), for `PeftModel.from_pretrained(model, folder)`."""
    model.save_pretrained(str(folder), safe_serialization=True)
    if not (folder / "adapter_model.safetensors").is_file():
        raise TransmodError(f"{folder}: peft wrote no adapter_model.safetensors; check the installed peft version")
