"""Small helpers shared by the pages: number formatting and turning bad input into st.error, never a traceback."""
from __future__ import annotations

import contextlib
import math

import streamlit as st
from pydantic import ValidationError

from planner.errors import PlannerInputError

_SUFFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))


def human(x: float, digits: int = 3) -> str:
    """1.234e9 -> '1.23B': parameter and token counts as people read them."""
    if x is None or not math.isfinite(x):
        return "—"
    for scale, suffix in _SUFFIXES:
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g}{suffix}"
    return f"{x:.{digits}g}"


def usd(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"${x / 1e6:,.2f}M" if abs(x) >= 1e6 else f"${x:,.0f}"


def error_message(exc: Exception) -> str:
    """One readable line: pydantic errors name the field, planner errors already do."""
    if isinstance(exc, ValidationError):
        e = exc.errors()[0]
        where = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        return f"{where}: {msg}" if where else msg
    return str(exc)


@contextlib.contextmanager
def user_errors(stop: bool = True):
    """Show bad-input errors from the core with st.error instead of a traceback; by default the page stops there."""
    try:
        yield
    except (PlannerInputError, ValueError) as exc:
        st.error(error_message(exc))
        if stop:
            st.stop()
