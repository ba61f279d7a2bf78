"""How often the method that fidelity chooses (`<mapping>-auto`) is the alignment method that trains best.

Reads a finished workflow's results folder in which one pair ran `<mapping>-auto` beside `<mapping>` (the study's
lsa) and `<mapping>-<method>` for the other methods, e.g. profiles/minilm with methods-config.yaml:

    python benchmarks/bench_fidelity_choice.py results --pair independent --mapping skip

Per grid cell and seed: the method fidelity chose (known before any training), the test score of every method's
trained student, and whether the chosen one scored best; then the same on the means over seeds. A method whose own
init did not run is read from the auto run where auto chose it (the same start and seed: the same training).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from transmod.align.fidelity import choose_method
from transmod.align.methods import grid_methods
from transmod.results.runs import read_metrics


def trained_scores(results: Path, pair: str, mapping: str) -> dict[tuple, dict[str, float]]:
    """(task, lang, peft, seed) -> {method: test score} of the `mapping` inits that ran, auto's under its choice."""
    scores: dict[tuple, dict[str, float]] = defaultdict(dict)
    for metrics in sorted((results / "runs" / pair).glob(f"*/*/*/student-{mapping}*/seed*/metrics.json")):
        task, lang, peft, run, seed = metrics.parts[-6:-1]
        init = run.removeprefix(f"student-{mapping}").lstrip("-") or "lsa"
        if init == "auto":
            fidelity = results / "fidelity" / pair / task / lang / peft / f"{seed}.json"
            init = choose_method(json.loads(fidelity.read_text())["inits"], mapping, fidelity)
            scores[(task, lang, peft, seed)].setdefault(f"{init} (auto)", read_metrics(metrics)["score"])
        elif init in grid_methods():
            scores[(task, lang, peft, seed)][init] = read_metrics(metrics)["score"]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--pair", required=True)
    parser.add_argument("--mapping", default="skip")
    args = parser.parse_args()
    scores = trained_scores(args.results, args.pair, args.mapping)
    cells, hits, means = 0, 0, defaultdict(lambda: defaultdict(list))
    print("| task | lang | module | seed | chosen | scores x 100 | best | chosen is best |\n|---|---|---|---|---|---|---|---|")
    for (task, lang, peft, seed), found in sorted(scores.items()):
        chosen = next((m.split()[0] for m in found if m.endswith("(auto)")), None)
        by_method = {m.split()[0]: v for m, v in found.items()}
        if chosen is None or len(by_method) < 2:
            continue
        best = max(by_method, key=by_method.__getitem__)
        hit = by_method[chosen] == by_method[best]
        cells, hits = cells + 1, hits + hit
        for m, v in by_method.items():
            means[(task, lang, peft)][m].append(v)
        means[(task, lang, peft)]["chosen"].append(chosen)
        shown = ", ".join(f"{m} {100 * v:.1f}" for m, v in sorted(by_method.items()))
        print(f"| {task} | {lang} | {peft} | {seed[4:]} | {chosen} | {shown} | {best} | {'yes' if hit else 'no'} |")
    print(f"\nper cell and seed: fidelity's choice trained best (or tied) in {hits} of {cells}")
    mean_hits = 0
    for cell, found in sorted(means.items()):
        chosen = statistics.mode(found.pop("chosen"))
        average = {m: statistics.fmean(v) for m, v in found.items() if len(v) == len(next(iter(found.values())))}
        best = max(average, key=average.__getitem__)
        mean_hits += average.get(chosen, -1.0) == average[best]
        print(f"{'/'.join(cell)}: chosen {chosen}; mean over seeds x 100: "
              + ", ".join(f"{m} {100 * v:.1f}" for m, v in sorted(average.items())) + f"; best {best}")
    print(f"on the means over seeds: fidelity's (most frequent) choice trained best in {mean_hits} of {len(means)} cells")


if __name__ == "__main__":
    main()
