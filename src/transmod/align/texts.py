"""Text inputs for sampling: a plain text file or a parquet file in a task's hub schema."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from transmod.errors import TransmodError
from transmod.train.batching import check_texts
from transmod.train.tasks import BUILTIN_TASKS

Example = tuple[str, ...]  # one sentence, or a sentence pair


def read_texts(path: str | Path) -> list[Example]:
    """Sentences (or sentence pairs) from a .txt/.tsv file (tab separates a pair) or a task parquet."""
    path = Path(path)
    if not path.is_file():
        raise TransmodError(f"{path}: no such sample data file; give a text file or a parquet file")
    if path.suffix == ".parquet":
        examples = _read_parquet(path)
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise TransmodError(f"{path}: not UTF-8 text (byte {exc.start}); give a text file, one sentence per line, "
                                "or a task parquet file") from None
        if "\x00" in text:
            raise TransmodError(f"{path}: holds binary data (NUL bytes), not text; give a text file, one sentence per line")
        examples = [_line_example(line, path, number) for number, line in enumerate(text.splitlines(), 1)
                    if line.strip()]
    if not examples:
        raise TransmodError(f"{path}: the sample data file holds no text; give at least one sentence")
    return examples


def _line_example(line: str, path: Path, number: int) -> Example:
    """One line as one text, or a pair split at its one tab; extra tabs or an empty side of the tab are
    refused, since dropping the later fields or sampling an empty text would go unnoticed."""
    fields = tuple(line.split("\t"))
    if len(fields) > 2:
        raise TransmodError(f"{path}: line {number} holds {len(fields)} tab-separated fields; a line is one text, or "
                            "a pair of texts separated by one tab: remove the extra tabs")
    if not all(field.strip() for field in fields):
        raise TransmodError(f"{path}: line {number} has an empty text beside its tab; a pair needs a text on each "
                            "side of the tab")
    return fields


def _read_parquet(path: Path) -> list[Example]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        columns = text_columns(names, str(path))
        table = pq.read_table(path, columns=list(columns)).to_pydict()
    except (pa.ArrowException, OSError) as exc:
        raise TransmodError(f"{path}: not a readable parquet file ({str(exc).splitlines()[0]}); give a task parquet "
                            "file or a text file") from None
    return examples_from_columns(table, columns, str(path))


def text_columns(names: Sequence[str], source: str) -> tuple[str, ...]:
    """The text columns of whichever task schema `names` follows."""
    for columns in (task.text_columns for task in BUILTIN_TASKS.values()):
        if set(columns) <= set(names):
            return columns
    wanted = "; ".join(f"{name}: {', '.join(task.text_columns)}" for name, task in BUILTIN_TASKS.items())
    raise TransmodError(f"{source}: no text columns of a known task schema ({wanted})")


def examples_from_columns(table: Mapping[str, Sequence], columns: Sequence[str], source: str) -> list[Example]:
    """Rows of a task table as examples (NER word lists joined with spaces); a cell that is not text is
    refused naming `source`, its column and row."""
    for column in columns:
        check_texts(table[column], column, source)
    rows = zip(*(table[c] for c in columns))
    return [tuple(" ".join(v) if isinstance(v, list) else v for v in row) for row in rows]
