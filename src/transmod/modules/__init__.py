"""Module kinds (bottleneck adapter, LoRA), where they sit in each architecture, and their on-disk formats."""
