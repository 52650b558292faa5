"""Moved to `planner.hardware.costs`; this name stays an alias of that very module (many importers, and tests that
monkeypatch it)."""
import sys

from planner.hardware import costs

sys.modules[__name__] = costs
