"""From samples to a student-shaped module: layer maps, sampling, correlation, alignment methods, transfer, fidelity."""
