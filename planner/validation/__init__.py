"""Validation on a plan's own runs: sparse/dense pairs' verdicts (holds, fails, cannot tell) and their power."""
