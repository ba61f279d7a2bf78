"""Task datasets, by hub id or from a local folder, through one call to `datasets.load_dataset`.

A local copy is a folder laid out like a hub dataset repo: parquet files plus a README.md whose
YAML front matter declares `configs:` (config_name, data_files). That is the hub's own mechanism,
so `load_dataset(source, name=config, split=split)` reads a hub id and a local copy the same way,
and offline runs (HF_HUB_OFFLINE=1, HF_DATASETS_OFFLINE=1) need nothing but the folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transmod.errors import TransmodError
from transmod.hub import looks_local, offline_unless_reachable
from transmod.train.tasks import SPLITS, Task, get_task


def _local_cache_dir(folder: Path, cache_dir: str | None) -> str:
    """A cache folder keyed by the local folder's location and files.

    `datasets` (4.8) keys a local folder's Arrow cache by the folder's *name* and its YAML only, so
    two folders named alike (two runs' `data/pi`), or a folder whose files were regenerated, would
    silently share stale data. Keying by path, size and mtime of every file rules that out.
    """
    import hashlib

    import datasets

    digest = hashlib.sha256(str(folder.resolve()).encode())
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            stat = path.stat()
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    root = Path(cache_dir) if cache_dir else Path(datasets.config.HF_DATASETS_CACHE)
    return str(root / "transmod-local" / digest.hexdigest()[:16])


def load_split(source: str, task: Task | str, lang: str, split: str, cache_dir: str | None = None) -> Any:
    """One language's split of a task, from a hub id or a local hub-layout folder (same call either way)."""
    spec = get_task(task)
    config, split_name = spec.config_and_split(lang, split)
    what = f"dataset {source!r} (task {spec.name}, language {lang}, split {split})"
    local = looks_local(source)
    if local and not Path(source).expanduser().is_dir():
        raise TransmodError(f"{what}: no such folder; give a hub id or a folder with a README.md "
                            f"declaring configs (write one with transmod.train.data.write_hub_folder)")
    if not local and source == spec.hub_id and lang not in spec.languages:
        raise TransmodError(f"{what}: {source} has no language {lang!r}; "
                            f"use one of {', '.join(spec.languages)}")
    if not local:
        offline_unless_reachable()
    import datasets

    path = str(Path(source).expanduser()) if local else source
    if local:
        cache_dir = _local_cache_dir(Path(path), cache_dir)
    try:
        dataset = datasets.load_dataset(path, name=config, split=split_name, cache_dir=cache_dir)
    except Exception as exc:  # datasets raises ValueError/FileNotFoundError/ConnectionError/...
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = ("the folder's README.md configs" if local else
                 "the hub (no local folder of that name exists; offline machines need a local copy)")
        raise TransmodError(f"{what}: cannot load config {config or 'default'!r}, split {split_name!r} "
                            f"from {where} ({detail}); check {spec.key('config')} and {spec.key('splits')}") from exc
    for key, columns in (("text_columns", spec.text_columns), ("label_column", (spec.label_column,)),
                         ("choices_column", (spec.choices_column,) if spec.choices_column else ())):
        missing = [c for c in columns if c not in dataset.column_names]
        if missing:
            raise TransmodError(f"{what}: no column {', '.join(missing)} (it has {', '.join(dataset.column_names)}); "
                                f"fix {spec.key(key)}")
    return dataset


def check_dataset(source: str, task: Task | str, languages: Sequence[str]) -> tuple[str, ...]:
    """Load every split of every language once and check its columns and labels; the label names.

    The workflow runs this for local folders before any job, so a declaration that does not fit its
    data (a missing column, label ids beyond the label names) is refused up front, naming the key.
    """
    import datasets

    spec = get_task(task)
    names: tuple[str, ...] | None = None
    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a check before the jobs: no bars in the workflow's own output
    try:
        for lang in languages:
            for split in SPLITS:
                dataset = load_split(source, spec, lang, split)
                where = f"dataset {source!r} (language {lang}, split {split})"
                if spec.is_decoder:  # answers, not labels: each row is checked where it is read
                    continue
                found = spec.label_names(dataset.features, where)
                if names is not None and found != names:
                    raise TransmodError(f"{where}: label names {', '.join(found)} differ from another split's "
                                        f"({', '.join(names)}); give the same ClassLabel in every split")
                names = found
                check_label_ids(dataset[spec.label_column], spec, len(names), where)
    finally:
        if shown:
            datasets.enable_progress_bars()
    return names or ()


def check_label_ids(column: Sequence, task: Task, num_labels: int, source: str) -> None:
    """Every label is an integer id of a declared label (word lists of ids for token tasks)."""
    import numpy as np

    flat = [t for seq in column for t in seq] if task.is_token else column
    bad = next((t for t in flat if not isinstance(t, (int, np.integer)) or not 0 <= t < num_labels), None)
    if bad is not None:
        raise TransmodError(f"{source}: column {task.label_column!r} holds {bad!r}, outside the label ids "
                            f"0..{num_labels - 1}; fix the data or {task.key('labels')}")


def write_hub_folder(out_dir: str | Path, task: Task | str,
                     rows: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]], title: str = "",
                     labels: Sequence[str] | None = None) -> Path:
    """Write rows keyed by (lang, split) as a hub-layout folder that `load_split` reads like the hub.

    Layout: `<config>/<split>.parquet` per config and split (ner: the single `default` config with
    `train_xx`/`val_xx`/`test_xx` splits, like wikineural), and a README.md declaring the configs.
    Labels are ClassLabel ids with the task's label names (or `labels`); other columns keep their types.
    """
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    spec = get_task(task)
    declared = spec.features(tuple(labels) if labels else None)
    first = next((dict(r) for split_rows in rows.values() for r in split_rows), {})
    inferred = datasets.Features.from_arrow_schema(pa.Table.from_pylist([first]).schema) if first else {}
    schema = datasets.Features({c: declared.get(c) or inferred[c] for c in {**first, **declared}}).arrow_schema
    out_dir = Path(out_dir)
    configs: dict[str, list[tuple[str, str]]] = {}
    for (lang, split), split_rows in sorted(rows.items()):
        config, split_name = spec.config_and_split(lang, split)
        config = config or "default"
        relative = f"{config}/{split_name}.parquet"
        (out_dir / config).mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([dict(r) for r in split_rows], schema=schema)
        pq.write_table(table, out_dir / relative)
        configs.setdefault(config, []).append((split_name, relative))
    lines = ["---", "configs:"]
    for config, files in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        lines += [f"  - split: {split_name}\n    path: {relative}" for split_name, relative in files]
    lines += ["---", "", f"# {title or f'{spec.name} data'}", ""]
    (out_dir / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out_dir
