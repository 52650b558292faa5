"""The study's PNG figures (matplotlib, headless): loss vs N_avg, predicted vs measured, pair gaps, N(t) of pairs."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from train_backend import registry  # noqa: E402


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def loss_vs_n_avg(df: pd.DataFrame, path: Path) -> str:
    """Dense runs coloured by tokens per parameter, sparse runs by final sparsity, each linked to its partner."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    dense = df[(df["role"] == "dense") & (df["kind"] != "tiny")]
    sc = ax.scatter(dense["n_avg"], dense["loss"], c=np.log10(dense["tokens_per_n_avg"]), cmap="viridis", s=28,
                    label="dense ladder")
    fig.colorbar(sc, ax=ax, label="log10 tokens per N")
    pairs = df[df["pair"] != ""]
    for _, s in pairs[pairs["role"] == "sparse"].iterrows():
        partner = pairs[(pairs["pair"] == s["pair"]) & (pairs["role"] == "dense_n_avg")]
        if not partner.empty:
            p = partner.iloc[0]
            ax.plot([s["n_avg"], p["n_avg"]], [s["loss"], p["loss"]], color="grey", lw=0.8)
    for role, marker, label in (("sparse", "^", "sparse (N_avg)"), ("dense_n_avg", "s", "dense partner at N_avg"),
                                ("dense_n_final", "D", "dense partner at N_final")):
        sub = pairs[pairs["role"] == role]
        if not sub.empty:
            ax.scatter(sub["n_avg"], sub["loss"], marker=marker, facecolors="none", edgecolors="C3" if role ==
                       "sparse" else "C1", s=44, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("N_avg (parameters, total)")
    ax.set_ylabel("validation loss (nats/byte)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def predicted_vs_measured(preds: pd.DataFrame, path: Path) -> str:
    """The dense-only law's predictions of the sparse runs (pairs filled, ablations hollow), on the axes of the
    pairs: an ablation run far off them (one that diverged) is counted in the title, not drawn."""
    fig, ax = plt.subplots(figsize=(5, 5))
    pair = preds["kind"] == "pair"
    cols = ["loss", "pred", "pred_n_final"]
    lo, hi = preds.loc[pair, cols].min().min() - 0.03, preds.loc[pair, cols].max().max() + 0.03
    for rows, face, label in ((preds[pair], None, "pairs"), (preds[~pair], "none", "ablations")):
        err = np.vstack([rows["pred"] - rows["pred_low"], rows["pred_high"] - rows["pred"]])
        ax.errorbar(rows["pred"], rows["loss"], xerr=err, fmt="o", ms=4, capsize=2, color="C0", mfc=face,
                    label=f"{label}, from N_avg (unified)")
        ax.scatter(rows["pred_n_final"], rows["loss"], marker="x" if face is None else "+", color="C3",
                   label=f"{label}, from N_final")
    off = int((preds["loss"] > hi + 0.2).sum())
    top = max(hi, preds.loc[preds["loss"] <= hi + 0.2, "loss"].max() + 0.02)
    ax.plot([lo, top], [lo, top], color="grey", lw=0.8)
    ax.set(xlim=(lo, top), ylim=(lo, top), xlabel="dense-only law's prediction (95% interval)",
           ylabel="measured validation loss of the sparse run")
    if off:
        ax.set_title(f"{off} ablation run{'s' if off > 1 else ''} above {top:.2f}, off the chart", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def gap_vs_sparsity(gaps: pd.DataFrame, path: Path) -> str:
    """Each pair's gap in % of loss with its 95% interval; series side by side at a sparsity; the +-1% band shaded."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = list(gaps.groupby(["group", "partner", "variant"]))
    for i, ((group, partner, variant), sub) in enumerate(series):
        sub = sub.sort_values("sparsity")
        err = np.vstack([sub["gap"] - sub["ci_low"], sub["ci_high"] - sub["gap"]]) / sub["ref"].to_numpy() * 100
        x = sub["sparsity"] * 100 + (i - (len(series) - 1) / 2) * 0.8
        ax.errorbar(x, sub["gap_rel"] * 100, yerr=err, fmt="o-", ms=4, capsize=3,
                    label=f"{group} vs {partner} ({variant})")
    ax.axhline(0, color="grey", lw=0.8)
    ax.axhspan(-1, 1, color="green", alpha=0.12, lw=0, label="+-1% of loss (holds if the interval is inside)")
    # the axis of the plain pairs and their partners: a variant that diverged would flatten every other interval
    plain = gaps[gaps["variant"] == "geometric"] if (gaps["variant"] == "geometric").any() else gaps
    low, high = (100 * plain[c] / plain["ref"] for c in ("ci_low", "ci_high"))
    span = (min(low.min(), -1.0) - 1.0, max(high.max(), 1.0) + 1.0)
    ax.set_ylim(*span)
    clipped = gaps[(100 * gaps["ci_low"] / gaps["ref"] < span[0]) | (100 * gaps["ci_high"] / gaps["ref"] > span[1])]
    if len(clipped):
        ax.set_title("clipped: " + "; ".join(f"{r.variant} {100 * r.gap_rel:+.0f}% [{100 * r.ci_low / r.ref:+.0f}%, "
                                           f"{100 * r.ci_high / r.ref:+.0f}%]" for r in clipped.itertuples()),
                     fontsize=8)
    ax.set_xlabel("final sparsity (%)")
    ax.set_ylabel("sparse - dense partner (% of loss)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def n_of_t(df: pd.DataFrame, runs_dir: Path, path: Path) -> str:
    """Active parameters over training of every pair's sparse run and its dense partners."""
    pairs = df[df["pair"] != ""]
    ids = list(dict.fromkeys(pairs["pair"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, pid in enumerate(ids):
        for _, r in pairs[pairs["pair"] == pid].iterrows():
            m = registry.read_metrics(runs_dir / r["run_id"])[::10]
            ls = "-" if r["role"] == "sparse" else "--"
            ax.plot([x["tokens"] / 1e6 for x in m], [x["active_params"] / 1e3 for x in m], ls=ls, color=f"C{i % 10}",
                    lw=1, label=pid if r["role"] == "sparse" else None)
    ax.set_xlabel("tokens (M)")
    ax.set_ylabel("active parameters N(t) (k); dashed: dense partners")
    ax.legend(fontsize=7)
    return _save(fig, path)


FIGURES = ("loss_vs_n_avg.png", "predicted_vs_measured.png", "pair_gaps.png", "n_of_t.png")


def draw_all(df, gaps, preds, runs_dir: Path, out: Path) -> list[str]:
    """The figures the finished runs allow; one left from an earlier report that this one cannot draw is removed."""
    names = [loss_vs_n_avg(df, out / FIGURES[0])]
    if not preds.empty:
        names.append(predicted_vs_measured(preds, out / FIGURES[1]))
    if not gaps.empty:
        names.append(gap_vs_sparsity(gaps, out / FIGURES[2]))
        names.append(n_of_t(df, runs_dir, out / FIGURES[3]))
    for stale in set(FIGURES) - set(names):
        (out / stale).unlink(missing_ok=True)
    return names
