"""Download buttons for tables (CSV) and charts (PNG and SVG, rendered by vl-convert from the chart's own
Vega-Lite spec). The bytes are made only when a button is clicked, so reruns stay fast."""
from __future__ import annotations

import json
from collections.abc import Callable

import altair as alt
import pandas as pd
import streamlit as st


EXPORT_WIDTH = 720  # px of a downloaded chart's plot (in the app the chart takes its column's width)


def chart_spec(chart: alt.TopLevelMixin | dict) -> dict:
    """A Vega-Lite spec as plain JSON data (datasets given as data frames become records), at a fixed width."""
    spec = chart if isinstance(chart, dict) else chart.to_dict()
    datasets = {k: json.loads(v.to_json(orient="records")) if isinstance(v, pd.DataFrame) else v
                for k, v in spec.get("datasets", {}).items()}
    return {"width": EXPORT_WIDTH} | spec | ({"datasets": datasets} if datasets else {})


def chart_png(chart: alt.TopLevelMixin | dict, scale: float = 2.0) -> bytes:
    import vl_convert as vlc  # imported on first export: it starts a JavaScript engine
    return vlc.vegalite_to_png(chart_spec(chart), scale=scale)


def chart_svg(chart: alt.TopLevelMixin | dict) -> bytes:
    import vl_convert as vlc
    return vlc.vegalite_to_svg(chart_spec(chart)).encode("utf-8")


def csv_bytes(df: pd.DataFrame, index: bool = False) -> bytes:
    return df.to_csv(index=index).encode("utf-8")


def row():
    """A row of download buttons that wraps onto a second line when the column is narrow (never cuts a label)."""
    return st.container(horizontal=True, gap="small")


def chart_buttons(chart: alt.TopLevelMixin | dict, name: str, where=None) -> None:
    """PNG and SVG buttons for one chart, in the row `where` (else a new one); `name` is the file stem and the
    widget key."""
    where = where or row()
    where.download_button("Chart (PNG)", lambda: chart_png(chart), f"{name}.png", "image/png", key=f"dl_{name}_png",
                          on_click="ignore", icon=":material/image:")
    where.download_button("Chart (SVG)", lambda: chart_svg(chart), f"{name}.svg", "image/svg+xml",
                          key=f"dl_{name}_svg", on_click="ignore", icon=":material/polyline:")


def csv_button(label: str, df: pd.DataFrame | Callable[[], pd.DataFrame], name: str, where=None,
               index: bool = False) -> None:
    """A CSV button as wide as its label, in the row `where` (else on its own); `df` may be a function, called
    only when the button is clicked."""
    (where or st).download_button(label, lambda: csv_bytes(df() if callable(df) else df, index), f"{name}.csv",
                                  "text/csv", key=f"dl_{name}_csv", on_click="ignore", icon=":material/table:")
