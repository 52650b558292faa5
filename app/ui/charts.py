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


def fit_chart(preds: pd.DataFrame) -> alt.Chart:
    """Predicted against measured loss, one colour per form, with the y = x line of a perfect fit."""
    lo, hi = preds[["measured", "predicted"]].min().min(), preds[["measured", "predicted"]].max().max()
    pad = 0.05 * (hi - lo or 1.0)
    domain = [lo - pad, hi + pad]
    diagonal = alt.Chart(pd.DataFrame({"x": domain, "y": domain})).mark_line(color="gray", strokeDash=[4, 4]).encode(
        x="x:Q", y="y:Q")
    points = alt.Chart(preds).mark_point(filled=True, size=70).encode(
        x=alt.X("measured:Q", title="Measured loss (nats/token)", scale=alt.Scale(domain=domain)),
        y=alt.Y("predicted:Q", title="Predicted loss (nats/token)", scale=alt.Scale(domain=domain)),
        color=alt.Color("form:N", title="Form", legend=alt.Legend(orient="bottom", labelLimit=WIDTH_LABEL_LIMIT)),
        shape=alt.Shape("form:N", legend=None),
        tooltip=["run:N", "form:N", alt.Tooltip("measured:Q", format=".4f"), alt.Tooltip("predicted:Q", format=".4f"),
                 alt.Tooltip("N:Q", format=".4s"), alt.Tooltip("tokens:Q", format=".4s")],
    )
    return (diagonal + points).properties(height=340, title="Predicted vs measured (dashed: perfect fit)")


def residual_chart(preds: pd.DataFrame) -> alt.Chart:
    """Residuals against the parameter count each form reads (log axis), to show structure a form misses."""
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="gray").encode(y="y:Q")
    points = alt.Chart(preds).mark_point(filled=True, size=70).encode(
        x=alt.X("N:Q", title="Parameter count the form reads (N_avg or N_final, count)",
                scale=alt.Scale(type="log"), axis=alt.Axis(format="~s")),
        y=alt.Y("residual:Q", title="Predicted − measured loss (nats/token)"),
        color=alt.Color("form:N", title="Form", legend=alt.Legend(orient="bottom", labelLimit=WIDTH_LABEL_LIMIT)),
        shape=alt.Shape("form:N", legend=None),
        tooltip=["run:N", "form:N", alt.Tooltip("residual:Q", format="+.4f")],
    )
    return (zero + points).properties(height=340, title="Residuals")
