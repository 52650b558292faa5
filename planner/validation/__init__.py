"""Validation of a law on a plan's own runs: the power of sparse/dense pairs and their verdicts (holds, fails, cannot tell)."""
