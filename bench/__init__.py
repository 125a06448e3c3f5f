"""Asphalt's benchmarks (issue 5): run with `python -m bench` from the repository root."""
