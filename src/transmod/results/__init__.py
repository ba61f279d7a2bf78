"""From finished runs to the study's tables and plots: gathering, statistics, rendering."""

# results/tables/<name>.* that hold every task (render.write_all, fidelity_table): no task may be named so
SHARED_TABLES = ("summary", "wins", "steps", "fidelity")
