"""The tasks, one entry each: hub dataset and its config/split naming, schema, label names and metric.

The library, the CLI and the workflow's wildcards and checks all read this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from transmod.errors import TransmodError

SPLITS: tuple[str, ...] = ("train", "validation", "test")


@dataclass(frozen=True)
class Task:
    """One task's hub dataset: where it lives, how its configs/splits are named, its schema."""

    name: str
    hub_id: str
    labels: tuple[str, ...]  # label names; the stored label is the index
    languages: tuple[str, ...]  # languages the hub dataset has
    text_columns: tuple[str, ...]
    label_column: str
    lang_in_split: bool  # True: one config, language in the split name (wikineural)
    split_names: Mapping[str, str]  # our split -> the dataset's split (before the language suffix)
    metric: str  # the primary metric: it picks the best epoch and fills the tables
    head_labels: tuple[str, ...] | None = None  # names the model's head and predictions use, if not `labels`

    @property
    def names(self) -> tuple[str, ...]:
        """Label names for training and reports (the hub's own names unless the task gives readable ones)."""
        return self.head_labels or self.labels

    def config_and_split(self, lang: str, split: str) -> tuple[str | None, str]:
        """`load_dataset` name/split for one language and split (None: the dataset's default config)."""
        if split not in SPLITS:
            raise TransmodError(f"split {split!r}: unknown; use one of {', '.join(SPLITS)}")
        name = self.split_names[split]
        if self.lang_in_split:
            return None, f"{name}_{lang}"
        return lang, name

    def features(self) -> Any:
        """The hub schema as `datasets.Features` (labels as ClassLabel, like the hub)."""
        import datasets

        label = datasets.ClassLabel(names=list(self.labels))
        if self.name == "ner":
            return datasets.Features({
                "tokens": datasets.Sequence(datasets.Value("string")),
                "ner_tags": datasets.Sequence(label),
                "lang": datasets.Value("string"),
            })
        columns: dict[str, Any] = {"id": datasets.Value("int32")} if self.name == "pi" else {}
        columns.update({c: datasets.Value("string") for c in self.text_columns})
        columns[self.label_column] = label
        return datasets.Features(columns)


NER_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")

TASKS: dict[str, Task] = {
    "ner": Task(
        name="ner",
        hub_id="Babelscape/wikineural",
        labels=NER_LABELS,
        languages=("de", "en", "es", "fr", "it", "nl", "pl", "pt", "ru"),
        text_columns=("tokens",),
        label_column="ner_tags",
        lang_in_split=True,
        split_names={"train": "train", "validation": "val", "test": "test"},
        metric="f1",
    ),
    "pi": Task(
        name="pi",
        hub_id="google-research-datasets/paws-x",
        labels=("0", "1"),  # 1: paraphrase
        languages=("de", "en", "es", "fr", "ja", "ko", "zh"),
        text_columns=("sentence1", "sentence2"),
        label_column="label",
        lang_in_split=False,
        split_names={s: s for s in SPLITS},
        metric="accuracy",
        head_labels=("different", "paraphrase"),
    ),
    "nli": Task(
        name="nli",
        hub_id="facebook/xnli",
        labels=("entailment", "neutral", "contradiction"),
        languages=("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh"),
        text_columns=("premise", "hypothesis"),
        label_column="label",
        lang_in_split=False,
        split_names={s: s for s in SPLITS},
        metric="accuracy",
    ),
}


def get_task(task: str) -> Task:
    """The task's description, or a TransmodError listing the known tasks."""
    try:
        return TASKS[task]
    except KeyError:
        raise TransmodError(f"task {task!r}: unknown; use one of {', '.join(TASKS)}") from None
