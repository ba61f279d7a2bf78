"""Offline demo assets: synthetic task data in the hub schemas, one tokenizer, four tiny models.

Machines here cannot reach the hub, so the demo workflow and the tests run on what this package
builds from a seed in seconds on a CPU (`language`, `tokenizer`, `models`); `minilm` prepares the
real-weights profile from the pip-installed all-MiniLM-L6-v2.
"""
