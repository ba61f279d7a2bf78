"""Offline compute nodes: copy every hub model and dataset the config names into local folders.

`fetch_assets` runs where the network is (the login node); every other job then reads the local
copies with the hub in offline mode. Models keep their hub files (safetensors weights only);
datasets are rewritten as hub-layout folders (parquet + README configs) that `load_split` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from transmod.errors import TransmodError
from transmod.train.tasks import SPLITS, Task, get_task

MODEL_FILES = ["config.json", "*.safetensors", "tokenizer*", "vocab*", "*.model", "special_tokens_map.json",
               "merges.txt", "added_tokens.json"]


def _not_found(exc: Exception) -> bool:
    return type(exc).__name__ in {"RepositoryNotFoundError", "DatasetNotFoundError", "GatedRepoError",
                                  "RevisionNotFoundError", "EntryNotFoundError", "HfHubHTTPError"}


def fetch_model(hub_id: str, dest: str | Path) -> Path:
    """Download a model's config, tokenizer and safetensors weights into `dest` (a plain folder)."""
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(hub_id, local_dir=str(dest), allow_patterns=MODEL_FILES)
    except Exception as exc:
        reason = "no such model on the hub (check the id in config.yaml)" if _not_found(exc) else str(exc).splitlines()[0]
        raise TransmodError(f"fetch_assets: model {hub_id!r}: {reason}") from None
    dest = Path(dest)
    if not (dest / "config.json").is_file() or not list(dest.glob("*.safetensors")):
        raise TransmodError(f"fetch_assets: model {hub_id!r} has no config.json or safetensors weights; "
                            "transmod loads safetensors only")
    return dest


def fetch_dataset(hub_id: str, task: Task | str, languages: Sequence[str], dest: str | Path) -> Path:
    """Read every split of the languages through `load_split` and write them as a hub-layout folder
    (with the same config and split names and ClassLabel names, so the task's declaration reads it)."""
    from transmod.train.data import load_split, write_hub_folder

    spec = get_task(task)
    rows, labels = {}, None
    for lang in languages:
        for split in SPLITS:
            try:
                dataset = load_split(hub_id, spec, lang, split)
                labels = spec.label_names(dataset.features, f"dataset {hub_id!r}")
            except TransmodError as exc:
                raise TransmodError(f"fetch_assets: dataset {hub_id!r}: {exc}") from None
            rows[(lang, split)] = dataset.to_list()
    return write_hub_folder(dest, spec, rows, title=f"{hub_id} ({spec.name}), fetched by transmod for offline use",
                            labels=labels)


def require(path: str | Path, what: str) -> None:
    """Fail early, naming the asset, when a fetched copy is missing on a compute node."""
    if not Path(path).exists():
        raise TransmodError(f"{what} {str(path)!r} is missing on this node: run `snakemake --until fetch_assets` "
                            "where the network is (the login node) first")


ASSETS = Path("resources/assets")  # where fetch_assets writes, relative to the workflow's working directory


def require_fetched(**assets: str) -> None:
    """Jobs call this with their model/dataset params: each one under resources/assets (a fetched copy,
    `assets.fetch: true`) must exist; hub ids and other local folders are left to the loaders."""
    for what, path in assets.items():
        if Path(path).parts[:len(ASSETS.parts)] == ASSETS.parts:
            require(path, what)
