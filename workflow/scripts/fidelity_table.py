"""fidelity_table: every alignment method's training-free transfer fidelity, side by side."""

import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from transmod.fidelity_table import collect_fidelity, write_fidelity

table = collect_fidelity(snakemake.input)
write_fidelity(table, snakemake.output.csv.removesuffix(".csv"), snakemake.output.plot)
print(table.to_string())
