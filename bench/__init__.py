"""PowerView benchmarks: scripts that print figures, never tests (see README.md)."""
