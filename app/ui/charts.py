"""Altair chart builders. Pure: they take data frames and return charts, so tests can read their specs."""
from __future__ import annotations

import copy
import functools

import altair as alt
import pandas as pd

from app.ui.pareto_view import SUMMARY_FIELDS

WIDTH_LABEL_LIMIT = 260  # px: long tooltips and legend labels wrap rather than being cut

# Counts (parameters, tokens) as people write them: SI prefixes, with "B" for billions instead of SI's "G".
COUNT_AXIS = alt.Axis(labelExpr="replace(format(datum.value, '~s'), 'G', 'B')")
# FLOP in scientific notation (1e20, 3e21): SI prefixes read "30E", "1Z", and E collides with the law's E.
# Log axes label only the 1x and 3x ticks of each decade: evenly spaced, never crowded, whatever the zoom.
_ROUND_TICK = "indexof([1, 3], round(datum.value / pow(10, floor(log(datum.value) / LN10 + 1e-6)))) >= 0"
# labelFlush: the labels at the ends of a frame that ends on a tick stay inside the drawing.
SCI_AXIS = alt.Axis(labelExpr=f"{_ROUND_TICK} ? replace(format(datum.value, '.0e'), 'e+', 'e') : ''", labelFlush=True)
USD_AXIS = alt.Axis(labelExpr=f"{_ROUND_TICK} ? '$' + replace(format(datum.value, '~s'), 'G', 'B') : ''",
                    labelFlush=True)


def cost_axis(column: str) -> alt.Axis:
    """Dollars as $2M / $1B, FLOP counts as 1e20."""
    return USD_AXIS if column.endswith("_usd") else SCI_AXIS


def schedule_chart(curves: pd.DataFrame, window: tuple[float, float] | None = None) -> alt.LayerChart:
    """The seed's first figure: N(t) of each design (solid) against the dense model with the same N_avg (dashed),
    the current design's pruning window shaded (if given). ``curves`` is `schedule_view.n_curves`."""
    lines = alt.Chart(curves).mark_line(interpolate="step-after", strokeWidth=2.5).encode(
        x=alt.X("tokens:Q", title="Training tokens", axis=COUNT_AXIS),
        y=alt.Y("params:Q", title="Parameters N(t) (count)", axis=COUNT_AXIS, scale=alt.Scale(zero=False)),
        color=alt.Color("design:N", title="Design", legend=alt.Legend(orient="bottom", labelLimit=0,
                                                                      columns=1)),
        strokeDash=alt.StrokeDash(
            "line:N", title=None, legend=alt.Legend(orient="bottom", labelLimit=WIDTH_LABEL_LIMIT),
            scale=alt.Scale(domain=["N(t)", "N_avg (dense model at the same average)"], range=[[1, 0], [6, 4]])),
        detail="design:N",
        tooltip=[alt.Tooltip("design:N"), alt.Tooltip("line:N"), alt.Tooltip("tokens:Q", format=".3s", title="tokens"),
                 alt.Tooltip("params:Q", format=".4s", title="parameters")],
    )
    if window is None:
        return alt.layer(lines).properties(height=380, title="Parameter count over training")
    band = alt.Chart(pd.DataFrame({"start": [window[0]], "end": [window[1]]})).mark_rect(
        opacity=0.08, color="gray").encode(x="start:Q", x2="end:Q")
    return (band + lines).properties(height=380, title="Parameter count over training (shaded: pruning window)")


def fit_chart(preds: pd.DataFrame) -> alt.Chart:
    """Predicted against measured loss, one colour per form, with the y = x line of a perfect fit."""
    lo, hi = preds[["measured", "predicted"]].min().min(), preds[["measured", "predicted"]].max().max()
    pad = 0.05 * (hi - lo or 1.0)
    domain = [lo - pad, hi + pad]
    scale = alt.Scale(domain=domain, zero=False)  # on every layer: a layer without it would pull zero into the axis
    diagonal = alt.Chart(pd.DataFrame({"x": domain, "y": domain})).mark_line(color="gray", strokeDash=[4, 4]).encode(
        x=alt.X("x:Q", scale=scale), y=alt.Y("y:Q", scale=scale))
    points = alt.Chart(preds).mark_point(filled=True, size=70).encode(
        x=alt.X("measured:Q", title="Measured loss (nats/token)", scale=scale),
        y=alt.Y("predicted:Q", title="Predicted loss (nats/token)", scale=scale),
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
                scale=log_domain(preds["N"]), axis=COUNT_AXIS),
        y=alt.Y("residual:Q", title="Residual (nats/token)"),  # a title longer than the plot would cut the chart's
        color=alt.Color("form:N", title="Form", legend=alt.Legend(orient="bottom", labelLimit=WIDTH_LABEL_LIMIT)),
        shape=alt.Shape("form:N", legend=None),
        tooltip=["run:N", "form:N", alt.Tooltip("residual:Q", format="+.4f")],
    )
    return (zero + points).properties(height=340, title="Residuals: predicted − measured loss")


def log_domain(values: pd.Series, pad: float = 1.25) -> alt.Scale:
    """A log scale framed on the data (times / divided by ``pad``) rather than rounded out to powers of ten."""
    return alt.Scale(type="log", domain=[float(values.min()) / pad, float(values.max()) * pad], nice=False)


PAIR_AXES = {"N_avg": "N_avg: average parameter count over training (count)",
             "N_final": "N_final: non-zero parameters at the end (count)"}


def pairs_charts(points: pd.DataFrame) -> dict[str, alt.LayerChart]:
    """Measured loss of each sparse / small-dense pair against N_avg and against N_final (one chart each, same
    frame), the two runs of a pair joined by a line: at matched N_avg a pair's runs nearly coincide, against
    N_final they lie far apart at the same loss, so no single curve in N_final passes through both. ``points`` is
    `laws_view.pair_points`."""
    lo, hi = points["loss"].min(), points["loss"].max()
    pad = 0.1 * (hi - lo or 0.1)
    y = alt.Y("loss:Q", title="Measured loss (nats/token)", scale=alt.Scale(domain=[lo - pad, hi + pad]))
    color = alt.Color("pair:N", title="Pair", legend=alt.Legend(orient="bottom", columns=2))
    n_scale = log_domain(points["N"])  # one frame for both charts, so horizontal spreads compare
    out = {}
    for count, title in PAIR_AXES.items():
        data = points[points["count"] == count]
        x = alt.X("N:Q", title=title, scale=n_scale, axis=COUNT_AXIS)
        line = alt.Chart(data).mark_line(strokeWidth=2, opacity=0.6).encode(x=x, y=y, color=color, detail="pair:N")
        dots = alt.Chart(data).mark_point(filled=True, size=90).encode(
            x=x, y=y, color=color, shape=alt.Shape("run:N", title="Run", legend=alt.Legend(orient="bottom", columns=3)),
            tooltip=["name:N", "run:N", alt.Tooltip("N:Q", format=".4s", title=count),
                     alt.Tooltip("loss:Q", format=".3f")])
        out[count] = alt.layer(line, dots).properties(height=440, title=f"Loss against {count}")  # with legends
    return out


# Counts, FLOP and dollars appear in the tooltip as the comparison table writes them (pareto_view.SUMMARY_FIELDS):
# one formatter, so a plan reads "1.784B" in both places.
TEXT_FIELDS = ("n_avg", "n_final", "tokens", "train_flops_effective", "lifetime_inference_flops", "train_usd",
               "inference_usd")
PARETO_TOOLTIP = [
    alt.Tooltip("plan_id:N", title="plan"), alt.Tooltip("n_layer:Q", title="layers"),
    alt.Tooltip("final_sparsity:Q", format=".0%", title="final sparsity"),
    alt.Tooltip("n_avg_text:N", title="N_avg"), alt.Tooltip("n_final_text:N", title="N_final"),
    alt.Tooltip("tokens_text:N", title="training tokens"), alt.Tooltip("loss:Q", format=".3f"),
    alt.Tooltip("train_flops_effective_text:N", title="training FLOP (effective)"),
    alt.Tooltip("lifetime_inference_flops_text:N", title="lifetime inference FLOP"),
    alt.Tooltip("train_usd_text:N", title="training $"),
    alt.Tooltip("inference_usd_text:N", title="inference $"),
    alt.Tooltip("validated:N", title="regime"),
]
TOOLTIP_FIELDS = ["plan_id", "n_layer", "loss", *TEXT_FIELDS]
SELECTION = "pick"  # the point-selection parameter; st.altair_chart returns its value under this name


def pareto_spec(df: pd.DataFrame, front: pd.DataFrame, ax, domain: tuple[list[float], list[float]],
                selected: str | None = None) -> dict:
    """Vega-Lite spec of the Pareto chart: the Altair template for these axes with this search's data inlined.

    Every candidate coloured by sparsity (hollow triangles: extrapolated beyond the validated regime), the frontier
    as a line, the selected plan ringed; log axes starting on `domain`, zoom and pan with the mouse. Clicking a
    point selects its plan_id. `ax` names the columns and titles (app.ui.pareto_view.Axes). Altair's schema
    validation costs more than the whole search, so the template is built once per axes and only data and domains
    change between reruns.
    """
    spec = copy.deepcopy(_pareto_template(ax))
    cols = list(dict.fromkeys([ax.x, ax.y, "plan_id", "extrapolated", "final_sparsity", *TOOLTIP_FIELDS]))
    text = {f"{f}_text": [SUMMARY_FIELDS[f][1](v) for v in df[f].tolist()] for f in TEXT_FIELDS}
    data = df[cols].assign(validated=df["extrapolated"].map({True: "extrapolated", False: "validated"}), **text)
    # Data frames, not records: Streamlit sends datasets as Arrow, so a JSON round trip here would be wasted work.
    spec["datasets"] = {"candidates": data.reset_index(drop=True),
                        "frontier": front[[ax.x, ax.y]].reset_index(drop=True),
                        "selected": df.loc[df["plan_id"] == selected, [ax.x, ax.y]].reset_index(drop=True)}
    for layer in spec["layer"]:
        layer["encoding"]["x"]["scale"]["domain"], layer["encoding"]["y"]["scale"]["domain"] = domain
    # The legend lists exactly the sparsities searched (2:4: 0% and 50%; unstructured up to 90%), not a gradient's
    # round numbers.
    spec["layer"][1]["encoding"]["color"]["legend"]["values"] = sorted(df["final_sparsity"].unique().tolist())
    return spec


@functools.lru_cache(maxsize=8)
def _pareto_template(ax) -> dict:
    pick = alt.selection_point(name=SELECTION, fields=["plan_id"], on="click", clear=False)
    zoom = alt.selection_interval(name="zoom", bind="scales")
    log_y = ax.y != "loss"
    xs = alt.X(f"{ax.x}:Q", title=ax.x_title, scale=alt.Scale(type="log"), axis=cost_axis(ax.x))
    ys = alt.Y(f"{ax.y}:Q", title=ax.y_title, axis=cost_axis(ax.y) if log_y else alt.Axis(format=".2f"),
               scale=alt.Scale(type="log" if log_y else "linear", zero=False))
    points = alt.Chart(alt.NamedData("candidates")).mark_point(size=60, strokeWidth=1.5, clip=True).encode(
        x=xs, y=ys,
        color=alt.Color("final_sparsity:Q", title="Final sparsity", scale=alt.Scale(scheme="viridis"),
                        legend=alt.Legend(format=".0%", orient="bottom", columns=5)),
        shape=alt.Shape("validated:N", title="Regime", scale=alt.Scale(domain=["validated", "extrapolated"],
                                                                        range=["circle", "triangle"]),
                        legend=alt.Legend(orient="bottom")),
        fill=alt.condition("datum.extrapolated", alt.value("transparent"), alt.Color("final_sparsity:Q")),
        opacity=alt.condition(pick, alt.value(0.95), alt.value(0.55)),
        tooltip=PARETO_TOOLTIP,
    ).add_params(pick, zoom)
    line = alt.Chart(alt.NamedData("frontier")).mark_line(color="#d62728", strokeWidth=2, clip=True).encode(
        x=xs, y=ys, order=f"{ax.x}:Q")
    ring = alt.Chart(alt.NamedData("selected")).mark_point(
        size=400, shape="circle", color="black", strokeWidth=2.5, filled=False, clip=True).encode(x=xs, y=ys)
    chart = alt.layer(line, points, ring).properties(
        height=520, title="Candidates (red: Pareto frontier, ringed: selected)")  # with axes and legends
    # A thousand-odd points draw several times faster on a canvas than as SVG nodes (Streamlit reads embedOptions).
    return chart.to_dict() | {"usermeta": {"embedOptions": {"renderer": "canvas"}}}


def loss_chart(curves: pd.DataFrame, predicted: tuple[float, float | None, float | None] | None = None
               ) -> alt.LayerChart:
    """Live training / validation loss against tokens; a prediction (loss, ci_low, ci_high), if any, as a dashed
    rule with its interval shaded."""
    lines = alt.Chart(curves).mark_line(point=alt.OverlayMarkDef(size=20)).encode(
        x=alt.X("tokens:Q", title="Training tokens", axis=COUNT_AXIS),
        y=alt.Y("loss:Q", title="Loss (nats/token)", scale=alt.Scale(zero=False)),
        color=alt.Color("split:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=["split:N", alt.Tooltip("tokens:Q", format=".3s"), alt.Tooltip("loss:Q", format=".4f")])
    layers, title = [lines], "Loss"
    if predicted is not None:
        loss, low, high = predicted
        if low is not None:
            layers.insert(0, alt.Chart(pd.DataFrame({"low": [low], "high": [high]})).mark_rect(
                opacity=0.15, color="black").encode(y="low:Q", y2="high:Q"))
        layers.append(alt.Chart(pd.DataFrame({"loss": [loss]})).mark_rule(strokeDash=[6, 4], color="black")
                      .encode(y="loss:Q", tooltip=[alt.Tooltip("loss:Q", format=".4f", title="predicted")]))
        title += " (dashed: predicted final loss" + (", shaded: its 95% interval)" if low is not None else ")")
    return alt.layer(*layers).properties(height=380, title=title)  # the height includes axes and legend


def density_chart(curves: pd.DataFrame) -> alt.Chart:
    """Density of the prunable weights: what the schedule asks for against what the masks hold, framed on the
    data (a run that keeps half its weights spans 0.5-1, not a sliver of 0-1)."""
    lo = float(curves["density"].min()) if not curves.empty else 0.0
    floor = max(0.0, min(lo - 0.05, 0.9))
    return alt.Chart(curves).mark_line(interpolate="step-after", strokeWidth=2).encode(
        x=alt.X("step:Q", title="Optimizer step"),
        y=alt.Y("density:Q", title="Prunable weights kept",
                scale=alt.Scale(domain=[floor, 1.0], nice=False), axis=alt.Axis(format=".0%", tickCount=6)),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
        strokeDash=alt.StrokeDash("series:N", legend=None),
        tooltip=["series:N", "step:Q", alt.Tooltip("density:Q", format=".4f")],
    ).properties(height=340, title="Density over training")
