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
    fig, ax = plt.subplots(figsize=(5, 5))
    err = np.vstack([preds["pred"] - preds["pred_low"], preds["pred_high"] - preds["pred"]])
    ax.errorbar(preds["pred"], preds["loss"], xerr=err, fmt="o", ms=4, capsize=2, label="from N_avg (unified)")
    ax.scatter(preds["pred_n_final"], preds["loss"], marker="x", color="C3", label="from N_final")
    lo = min(preds["loss"].min(), preds["pred"].min(), preds["pred_n_final"].min()) - 0.02
    hi = max(preds["loss"].max(), preds["pred"].max(), preds["pred_n_final"].max()) + 0.02
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    ax.set_xlabel("dense-only law's prediction (95% interval)")
    ax.set_ylabel("measured validation loss of the sparse run")
    ax.legend(fontsize=8)
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
