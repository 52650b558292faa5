"""Uncertainty of scaling-law predictions and the decisions made under it."""
