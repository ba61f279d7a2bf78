"""fidelity_table: every alignment method's training-free transfer fidelity, side by side."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.results.fidelity_table import collect_fidelity, write_fidelity

table = collect_fidelity(snakemake.input.fidelity, snakemake.input.zero_shot)
write_fidelity(table, snakemake.output.csv.removesuffix(".csv"), snakemake.output.plot)
print(table.to_string())
