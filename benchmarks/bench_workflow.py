"""Workflow speed: paper-grid dry-run, the demo's wall time, a no-op re-run, and each rule's cost.

    python benchmarks/bench_workflow.py            # runs the demo in a scratch directory
    python benchmarks/bench_workflow.py --workdir DIR --skip-demo   # summarise an existing run

Targets (issue "The workflow"): dry-run of the paper grid under 5 s; demo under 10 min on 2 cores;
no-op re-run of the finished demo under 10 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args], cwd=cwd,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"snakemake {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return elapsed


def rule_costs(results: Path) -> pd.DataFrame:
    """Per rule: job count and the sum/mean/max of wall seconds from the `benchmark:` files."""
    rows = []
    for tsv in (results / "benchmarks").rglob("*.tsv"):
        rule = tsv.relative_to(results / "benchmarks").parts[0].removesuffix(".tsv")
        bench = pd.read_csv(tsv, sep="\t")
        rows.append({"rule": rule, "s": float(bench["s"].iloc[-1]), "max_rss_mb": float(bench["max_rss"].iloc[-1])})
    frame = pd.DataFrame(rows)
    return frame.groupby("rule").agg(jobs=("s", "size"), total_s=("s", "sum"), mean_s=("s", "mean"),
                                     max_s=("s", "max"), max_rss_mb=("max_rss_mb", "max")).sort_values("total_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, help="working directory of the demo (default: a new temp dir)")
    parser.add_argument("--skip-demo", action="store_true", help="do not run the demo; summarise --workdir")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        dry = timed(["-n", "--cores", "1"], Path(scratch))
        print(f"paper grid dry-run (snakemake -n, config.yaml):   {dry:7.2f} s   (target < 5 s)")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="transmod-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "profiles").exists():
        (work / "profiles").symlink_to(REPO / "profiles")
    profile = ["--profile", str(REPO / "profiles" / "demo")]
    if not args.skip_demo:
        wall = timed(profile, work)
        print(f"demo, from scratch, 2 cores:                      {wall:7.2f} s   (target < 600 s)")
    noop = timed(profile, work)
    print(f"no-op re-run of the finished demo:                {noop:7.2f} s   (target < 10 s)")
    costs = rule_costs(work / "results")
    print("\nper-rule figures from the `benchmark:` files (wall seconds; jobs ran two at a time):")
    print(costs.to_string(float_format=lambda v: f"{v:.2f}"))
    print(f"\nsum of job wall times: {costs.total_s.sum():.1f} s; demo folder: {work}")


if __name__ == "__main__":
    main()
