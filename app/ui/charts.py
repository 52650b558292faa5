"""Altair chart builders. Pure: they take data frames and return charts, so tests can read their specs."""
from __future__ import annotations

import altair as alt
import pandas as pd

WIDTH_LABEL_LIMIT = 260  # px: long tooltips and legend labels wrap rather than being cut


def schedule_chart(curves: pd.DataFrame, window: tuple[float, float]) -> alt.Chart:
    """The seed's first figure: N(t) of the sparse run against the dense model with the same N_avg."""
    band = alt.Chart(pd.DataFrame({"start": [window[0]], "end": [window[1]]})).mark_rect(
        opacity=0.08, color="gray").encode(x="start:Q", x2="end:Q")
    lines = alt.Chart(curves).mark_line(interpolate="step-after", strokeWidth=2.5).encode(
        x=alt.X("tokens:Q", title="Training tokens", axis=alt.Axis(format="~s")),
        y=alt.Y("params:Q", title="Parameters N(t) (count)", axis=alt.Axis(format="~s"),
                scale=alt.Scale(zero=False)),
        color=alt.Color("run:N", title=None, legend=alt.Legend(orient="bottom", labelLimit=WIDTH_LABEL_LIMIT)),
        strokeDash=alt.StrokeDash("run:N", legend=None),
        tooltip=[alt.Tooltip("run:N"), alt.Tooltip("tokens:Q", format=".3s", title="tokens"),
                 alt.Tooltip("params:Q", format=".4s", title="parameters")],
    )
    return (band + lines).properties(height=380, title="Parameter count over training (shaded: pruning window)")
