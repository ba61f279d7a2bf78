"""Tasks as declarations: kind, dataset naming, columns, label names and metric, one `Task` each.

The study's three tasks (NER, PI, NLI) are built-in declarations; any other classification task is
declared in the workflow's config (`tasks.<name>`) with the same keys, and `declare_task` turns either
into a `Task`. Errors name the config key (`tasks.<name>.<key>`). The library, the CLI, the workflow
and the tables all read a `Task`, never a task's name alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from transmod.errors import TransmodError

SPLITS: tuple[str, ...] = ("train", "validation", "test")
TOKEN, SEQUENCE = "token-classification", "sequence-classification"
COMPLETION, CHOICE = "completion", "multiple-choice"  # decoder tasks, scored by likelihood (transmod.train.lmscore)
TASK_KINDS: tuple[str, ...] = (TOKEN, SEQUENCE, COMPLETION, CHOICE)
DECODER_KINDS: tuple[str, ...] = (COMPLETION, CHOICE)


@dataclass(frozen=True)
class Metric:
    """A test/validation metric: what the tables call it, which task kinds it scores, and the range of its
    values (the tables refuse a score outside it)."""

    description: str
    kinds: tuple[str, ...]
    bounds: tuple[float, float] = (0.0, 1.0)


# Keys are what metrics.json and predictions record (`f1` is seqeval's name, kept for the study's files).
METRICS: dict[str, Metric] = {
    "f1": Metric("entity-level F1 (conlleval)", (TOKEN,)),
    "accuracy": Metric("accuracy", (TOKEN, SEQUENCE, CHOICE)),
    "exact_match": Metric("exact match of the greedy answer", (COMPLETION,)),
    "macro_f1": Metric("macro-F1", (TOKEN, SEQUENCE)),
    "matthews": Metric("Matthews correlation", (TOKEN, SEQUENCE), (-1.0, 1.0)),
}


@dataclass(frozen=True)
class Task:
    """One classification task: its data's naming and columns, its labels and its metric.

    `config` and `splits` are patterns in which `{lang}` stands for the language: a language per
    config (`{lang}`, PAWS-X), per split (`train_{lang}`, WikiNeural) or a fixed config (`default`;
    None is the dataset's default config). Token tasks read one column of word lists (labels per
    word, on the first sub-token); sequence tasks one text column, or two with `text_pair`. Decoder tasks
    read one text column (the prompt, or the question); a completion task's `label_column` holds the answer
    text, a multiple-choice task's the index of the right one among the list in `choices_column`.
    """

    name: str
    kind: str
    text_columns: tuple[str, ...]
    label_column: str
    metric: str
    text_pair: bool = False
    labels: tuple[str, ...] | None = None  # label names; None: the dataset's ClassLabel names
    config: str | None = "{lang}"
    splits: Mapping[str, str] = field(default_factory=lambda: {s: s for s in SPLITS})
    label: str = ""  # short name for table columns (default: the name in capitals)
    title: str = ""  # caption name for tables and figures (default: `label`)
    hub_id: str | None = None  # the hub dataset this declaration describes, if any
    languages: tuple[str, ...] = ()  # the languages that hub dataset has (checked before any job)
    choices_column: str | None = None  # a multiple-choice task's column of answer lists

    @property
    def is_decoder(self) -> bool:
        return self.kind in DECODER_KINDS

    @property
    def is_token(self) -> bool:
        return self.kind == TOKEN

    @property
    def short(self) -> str:
        return self.label or self.name.upper()

    @property
    def caption(self) -> str:
        return self.title or self.short

    def key(self, name: str) -> str:
        """The config key of one of this task's settings, as errors name it."""
        return f"tasks.{self.name}.{name}"

    def config_and_split(self, lang: str, split: str) -> tuple[str | None, str]:
        """`load_dataset` name/split for one language and split (None: the dataset's default config)."""
        if split not in SPLITS:
            raise TransmodError(f"split {split!r}: unknown; use one of {', '.join(SPLITS)}")
        config = None if self.config is None else self.config.format(lang=lang)
        return config, self.splits[split].format(lang=lang)

    def label_names(self, features: Any, source: str = "the dataset") -> tuple[str, ...]:
        """The declared label names, else the ClassLabel names of the label column (`datasets.Features`)."""
        feature = features.get(self.label_column) if features is not None else None
        feature = getattr(feature, "feature", feature)  # a token task's Sequence(ClassLabel)
        found = tuple(getattr(feature, "names", None) or ())
        if self.labels is not None:
            if found and len(found) != len(self.labels):
                raise TransmodError(
                    f"{self.key('labels')}: {len(self.labels)} names, but {source} declares {len(found)} classes in "
                    f"column {self.label_column!r} ({', '.join(found)}); give one name per class")
            return self.labels
        if not found:
            raise TransmodError(
                f"{self.key('labels')}: column {self.label_column!r} of {source} is not a ClassLabel, so its names "
                "are unknown; list the label names (in label-id order) under that key")
        return found

    def features(self, labels: tuple[str, ...] | None = None) -> Any:
        """The declared columns as `datasets.Features`, labels as ClassLabel (as the hub stores them)."""
        import datasets

        text = datasets.Value("string")
        if self.kind == COMPLETION:
            return datasets.Features({self.text_columns[0]: text, self.label_column: text})
        if self.kind == CHOICE:
            return datasets.Features({self.text_columns[0]: text, self.choices_column: datasets.Sequence(text),
                                      self.label_column: datasets.Value("int64")})
        names = labels or self.labels
        if not names:
            raise TransmodError(f"{self.key('labels')}: needed to write {self.name} data; list the label names")
        label = datasets.ClassLabel(names=list(names))
        if self.is_token:
            return datasets.Features({self.text_columns[0]: datasets.Sequence(datasets.Value("string")),
                                      self.label_column: datasets.Sequence(label)})
        return datasets.Features({**{c: datasets.Value("string") for c in self.text_columns},
                                  self.label_column: label})

    def to_dict(self, display: bool = True) -> dict[str, Any]:
        """Plain data (a job's params) that `from_dict` rebuilds; `display=False` leaves out the names
        the tables show, which no job reads."""
        data = asdict(self)
        data["splits"] = dict(self.splits)
        return data if display else {k: v for k, v in data.items() if k not in DISPLAY_KEYS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Task:
        values = dict(data)
        for key in ("text_columns", "labels", "languages"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


NER_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")

# The study's tasks; a config's `tasks.ner` etc. start from these, and may override any key.
BUILTIN: dict[str, dict[str, Any]] = {
    "ner": dict(kind=TOKEN, text_columns=["tokens"], label_column="ner_tags", metric="f1", labels=list(NER_LABELS),
                config=None, splits={"train": "train_{lang}", "validation": "val_{lang}", "test": "test_{lang}"},
                hub_id="Babelscape/wikineural", languages=["de", "en", "es", "fr", "it", "nl", "pl", "pt", "ru"]),
    "pi": dict(kind=SEQUENCE, text_columns=["sentence1", "sentence2"], text_pair=True, label_column="label",
               metric="accuracy", labels=["different", "paraphrase"],
               hub_id="google-research-datasets/paws-x", languages=["de", "en", "es", "fr", "ja", "ko", "zh"]),
    "nli": dict(kind=SEQUENCE, text_columns=["premise", "hypothesis"], text_pair=True, label_column="label",
                metric="accuracy", labels=["entailment", "neutral", "contradiction"], hub_id="facebook/xnli",
                languages=["ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh"]),
}
DISPLAY_KEYS = ("label", "title")
# The config keys of a declaration (beside `dataset`, `languages` and `training`, which the workflow reads).
DECLARATION_KEYS: tuple[str, ...] = ("kind", "text_columns", "text_pair", "label_column", "labels", "metric",
                                     "config", "splits", "label", "title", "choices_column")
_REQUIRED = ("kind", "text_columns", "label_column", "metric")


def declare_task(name: str, spec: Mapping[str, Any] | None = None) -> Task:
    """A Task from a config declaration (`tasks.<name>`), over the built-in one of that name if any."""
    spec = {k: v for k, v in (spec or {}).items() if k in DECLARATION_KEYS}
    values = {**BUILTIN.get(name, {}), **spec}
    missing = [k for k in _REQUIRED if k not in values]
    if missing:
        raise TransmodError(
            f"tasks.{name}: {name!r} is not a built-in task ({', '.join(BUILTIN)}), so it needs "
            f"{', '.join(missing)}; declare them (see config.yaml's `tasks` comments)")
    task = Task.from_dict({"name": name, **values})
    _check(task)
    return task


def _check(task: Task) -> None:
    if task.kind not in TASK_KINDS:
        raise TransmodError(f"{task.key('kind')}: unknown kind {task.kind!r}; use one of {', '.join(TASK_KINDS)}")
    metric = METRICS.get(task.metric)
    if metric is None:
        raise TransmodError(f"{task.key('metric')}: unknown metric {task.metric!r}; use one of {', '.join(METRICS)}")
    if task.kind not in metric.kinds:
        allowed = [m for m, spec in METRICS.items() if task.kind in spec.kinds]
        raise TransmodError(f"{task.key('metric')}: {task.metric} ({metric.description}) does not score a "
                            f"{task.kind} task; use one of {', '.join(allowed)}")
    wanted = 2 if task.text_pair else 1
    if len(task.text_columns) != wanted:
        what = ("a text-pair task (text_pair: true) reads two text columns" if task.text_pair else
                "a token-classification task reads one column of word lists" if task.is_token else
                "a single-text task reads one text column (set text_pair: true for two)")
        raise TransmodError(f"{task.key('text_columns')}: {what}, got {len(task.text_columns)} "
                            f"({', '.join(task.text_columns) or 'none'}); name {wanted}")
    if task.is_token and task.text_pair:
        raise TransmodError(f"{task.key('text_pair')}: a token-classification task has no text pair; drop the key")
    if (task.kind == CHOICE) != (task.choices_column is not None):
        raise TransmodError(f"{task.key('choices_column')}: " + (
            "a multiple-choice task names the column of its answer lists" if task.kind == CHOICE else
            f"only a multiple-choice task has choices, not a {task.kind} task; drop the key"))
    if task.choices_column is not None and task.choices_column in task.text_columns:
        raise TransmodError(f"{task.key('choices_column')}: {task.choices_column!r} is also a text column; name the "
                            "column of answer lists")
    if task.is_decoder and task.text_pair:
        raise TransmodError(f"{task.key('text_pair')}: a {task.kind} task reads one prompt column; drop the key")
    if task.label_column in (*task.text_columns, task.choices_column):
        raise TransmodError(f"{task.key('label_column')}: {task.label_column!r} is also a text or choices column; "
                            "name the column that holds the labels")
    if set(task.splits) != set(SPLITS):
        raise TransmodError(f"{task.key('splits')}: name the dataset split of each of {', '.join(SPLITS)}, "
                            f"got {', '.join(task.splits) or 'none'}")
    for key, pattern in [("config", task.config), *((f"splits.{s}", p) for s, p in task.splits.items())]:
        try:
            (pattern or "").format(lang="xx")
        except (KeyError, IndexError, ValueError):
            raise TransmodError(f"{task.key(key)}: {pattern!r} may hold `{{lang}}` and no other placeholder") from None
    if task.labels is not None and (not task.labels or len(set(task.labels)) != len(task.labels)):
        raise TransmodError(f"{task.key('labels')}: give distinct label names, one per class")
    if task.metric == "f1" and task.labels and not any(n[:2] in ("B-", "I-") for n in task.labels):
        raise TransmodError(f"{task.key('metric')}: entity F1 reads BIO labels (B-X, I-X, O), and "
                            f"{task.key('labels')} has none; use accuracy or macro_f1 for other tags")


BUILTIN_TASKS: dict[str, Task] = {name: declare_task(name) for name in BUILTIN}


def get_task(task: Task | str) -> Task:
    """A Task as given, or the built-in one of that name (a TransmodError lists them)."""
    if isinstance(task, Task):
        return task
    try:
        return BUILTIN_TASKS[task]
    except KeyError:
        raise TransmodError(f"task {task!r}: not a built-in task ({', '.join(BUILTIN_TASKS)}); pass its declaration "
                            "(transmod.train.tasks.declare_task)") from None
