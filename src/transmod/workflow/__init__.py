"""Glue for the Snakemake workflow: config checks, SLURM profile checks, asset fetching, job logs."""
