"""demo_models: the two demo pairs (matching: same width; incompatible: different widths)."""

import sys
from pathlib import Path

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from transmod.demo import build_demo_models

root = Path(snakemake.output[0]).parent
built = build_demo_models(snakemake.input[0], root)
missing = sorted(set(map(str, snakemake.output)) - {str(p) for p in built.values()})
if missing:
    raise SystemExit(f"demo_models: expected folders not built: {missing}")
