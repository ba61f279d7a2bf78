"""Tokenised datasets cached on disk, so every run of one model on one task and language tokenises once.

The key is the tokenizer's full definition, the dataset's content fingerprint and the encoding
settings: teacher runs of both module types and all seeds share it, and so do student runs of
every init. Entries are parquet files written atomically; a half-written entry never exists.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from transmod.atomic import atomic_path
from transmod.train.batching import encode
from transmod.train.tasks import Task, get_task


def tokenizer_definition(tokenizer: Any) -> Any:
    """The tokenizer's vocabulary and rules, without the truncation/padding state that calls change."""
    if not getattr(tokenizer, "is_fast", False):
        return repr(tokenizer)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec.pop("truncation", None)
    spec.pop("padding", None)
    return spec


def cache_key(tokenizer: Any, dataset: Any, task: Task | str, max_length: int, num_labels: int) -> str:
    definition = tokenizer_definition(tokenizer)
    spec = get_task(task)
    encoding = [spec.name, spec.kind, list(spec.text_columns), spec.label_column]  # what `encode` reads
    # The Arrow files it was read from: `datasets` fingerprints a local folder by its name, not its content, but
    # load_split keeps a regenerated folder's Arrow files apart (data._local_cache_dir), so their paths tell it.
    files = sorted(f["filename"] for f in getattr(dataset, "cache_files", None) or [])
    parts = [definition, list(tokenizer.model_input_names), getattr(dataset, "_fingerprint", None), encoding,
             max_length, num_labels, files]
    if parts[2] is None:  # a dataset without a content fingerprint cannot be keyed safely
        return ""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def cached_encode(dataset: Any, tokenizer: Any, task: Task | str, max_length: int, num_labels: int, *, source: str,
                  cache_dir: str | Path | None) -> list[dict]:
    """`batching.encode`, read from `cache_dir` when an earlier run of the same tokenizer wrote it."""
    key = cache_key(tokenizer, dataset, task, max_length, num_labels) if cache_dir is not None else ""
    if not key:
        return encode(dataset, tokenizer, task, max_length, num_labels, source=source)
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(cache_dir) / f"{get_task(task).name}-{key}.parquet"
    if path.is_file():
        try:
            return pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError) as exc:  # damaged on disk: the cache is ours to rebuild
            print(f"token cache: {path} is damaged ({str(exc).splitlines()[0]}); tokenising again", file=sys.stderr)
    examples = encode(dataset, tokenizer, task, max_length, num_labels, source=source)
    if examples:
        with atomic_path(path) as tmp:
            pq.write_table(pa.Table.from_pylist(examples), tmp)
    return examples
