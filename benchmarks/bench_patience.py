"""Early stopping on the demo: the training cost `patience` saves, and what it changes in the tables.

    python benchmarks/bench_patience.py --workdir DIR            # DIR: a finished demo run, patience off
    python benchmarks/bench_patience.py --workdir DIR --patience 1

The script copies DIR, re-runs the copy with `training.{teacher,student}.patience: N` (the setting is a
training parameter, so training and everything after it runs again; data, models and samples are
reused) and prints, per role, the runs, the epochs they trained and their training wall time (the
`benchmark:` files of train_teacher / train_student), with and without patience, and the saving;
then how far each summary cell (AVG per setting, module and row) moved. Patience is off by default,
so the study's protocol (every epoch, best one kept) stays the default.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "profiles" / "demo" / "demo-config.yaml"


def training_cost(results: Path) -> pd.DataFrame:
    """Per role: runs, epochs trained and training seconds."""
    rows = []
    for role, rule in (("teacher", "train_teacher"), ("student", "train_student")):
        for tsv in sorted((results / "benchmarks" / rule).rglob("*.tsv")):
            rows.append({"role": role, "s": float(pd.read_csv(tsv, sep="\t")["s"].iloc[-1])})
    seconds = pd.DataFrame(rows).groupby("role")["s"].agg(["size", "sum"])
    epochs = {"teacher": 0, "student": 0}
    for history in results.rglob("history.json"):
        role = "teacher" if "teachers" in history.parts else "student"
        epochs[role] += len(json.loads(history.read_text())["epochs"])
    return seconds.assign(epochs=pd.Series(epochs)).rename(columns={"size": "runs", "sum": "train_s"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="a finished demo run (patience off)")
    parser.add_argument("--patience", type=int, default=1, help="epochs without a better validation metric")
    args = parser.parse_args()
    base = args.workdir / "results"
    if not (base / "tables" / "summary.csv").is_file():
        sys.exit(f"{base}: no finished demo here; run `snakemake --profile profiles/demo` in {args.workdir} first")

    copy = Path(tempfile.mkdtemp(prefix="transmod-patience-"))
    for name in ("resources", "results", ".snakemake"):  # .snakemake: its records tell what the change re-runs
        shutil.copytree(args.workdir / name, copy / name, symlinks=True)
    training = yaml.safe_load(DEMO_CONFIG.read_text())["training"]
    override = {"training": {role: {**spec, "patience": args.patience} for role, spec in training.items()}}
    (copy / "patience.yaml").write_text(yaml.safe_dump(override))
    done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--profile",
                           str(REPO / "profiles" / "demo"), "--configfile", str(DEMO_CONFIG), "patience.yaml"],
                          cwd=copy, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the demo with patience {args.patience} failed:\n{done.stderr[-3000:]}")

    off, on = training_cost(base), training_cost(copy / "results")
    print(f"demo training cost, patience off vs patience {args.patience} (same data, models, seeds):")
    for role in ("teacher", "student"):
        a, b = off.loc[role], on.loc[role]
        print(f"  {role:8s} {int(a.runs):3d} runs: epochs {int(a.epochs):4d} -> {int(b.epochs):4d} "
              f"({100 * (1 - b.epochs / a.epochs):5.1f} % fewer), training {a.train_s:7.1f} s -> {b.train_s:7.1f} s "
              f"({100 * (1 - b.train_s / a.train_s):5.1f} % saved)")
    total_off, total_on = off.train_s.sum(), on.train_s.sum()
    print(f"  all      training {total_off:7.1f} s -> {total_on:7.1f} s ({100 * (1 - total_on / total_off):5.1f} % saved)")

    keys = ["setting", "module", "model", "task"]
    cells = pd.read_csv(base / "tables" / "summary.csv").set_index(keys)["AVG"]
    moved = (pd.read_csv(copy / "results" / "tables" / "summary.csv").set_index(keys)["AVG"] - cells).dropna()
    print(f"summary AVG cells (x 100): {len(moved)}; mean |change| {moved.abs().mean():.2f} points, "
          f"largest {moved.abs().max():.2f} ({' / '.join(map(str, moved.abs().idxmax()))})")
    print(f"(the patience run is kept in {copy})")


if __name__ == "__main__":
    main()
