"""Validation study: train a plan's scaled-down ladder and check the unified law's claim at laptop scale.

For each rung the ladder (`planner.ladder.scale_down`) gives a sparse run and a dense partner with the same N_avg;
this study adds a second dense partner with the sparse run's N_final. If N_avg is the right quantity, the sparse run
matches the dense run at N_avg and beats the dense run at N_final. Then the unified law (N_avg) and Chinchilla on
N_final are fitted to all runs and compared by leave-one-rung-out error, the seed's central experiment in small.

    python bench/study_ladder.py [--plan PLAN.yaml] [--seeds 0 1] [--runs-dir DIR]

Writes the table to bench/RESULTS.md under "## Validation ladder (study): <parent plan name>". Takes about
12 minutes per seed on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import cpu_model, write_section  # noqa: E402
from planner.fit import compare_forms  # noqa: E402
from planner.ladder import dense_partner_shape, scale_down  # noqa: E402
from planner.plan import RunConfig, load_plan, make_plan, resolve_schedule  # noqa: E402
from planner.search import build_plan  # noqa: E402
from planner.shapes import PRESETS  # noqa: E402
from train_backend.train import Options, run  # noqa: E402

HEADING = "## Validation ladder (study)"  # a section per parent plan: "<HEADING>: <plan name>"


def default_parent():
    """llama2-70m at 80% final sparsity, the seed's 25%->75%-of-compute geometric window, 20 tokens per N_avg."""
    return build_plan(PRESETS["llama2-70m"], 0.8, "geometric", window_basis="compute", start=0.25, end=0.75,
                      tokens_per_param=20, batch_size=256, seq_len=2048, name="llama2-70m-s80")


def ladder_with_final_partners(parent, seed: int):
    """(rung, role, plan) for every run: the ladder's sparse and dense@N_avg plans plus a dense@N_final partner."""
    ladder = scale_down(parent)
    out = []
    for rung, (sparse, dense) in enumerate(zip(ladder[::2], ladder[1::2])):
        run_cfg = RunConfig(seed=seed, eval_every=sparse.run.eval_every, eval_batches=16)
        m = sparse.model
        small = dense_partner_shape(m.n_layer, m.n_head, sparse.derived.n_final, m.d_model)
        final = make_plan(small, resolve_schedule(small, sparse.budget.steps, "dense", 0.0, "tokens", 0.0, 0.0),
                          sparse.budget, name=f"{parent.name}-r{rung}-dense-final")
        for role, plan in (("sparse", sparse), ("dense@N_avg", dense), ("dense@N_final", final)):
            out.append((rung, role, plan.model_copy(update={"run": run_cfg})))
    return out


def train_all(runs, runs_dir: Path) -> pd.DataFrame:
    rows = []
    for rung, role, plan in runs:
        t0 = time.time()
        summary = run(plan, Options(runs_dir=runs_dir, threads=1))
        rows.append({"rung": rung, "role": role, "seed": plan.run.seed, "n_total": plan.derived.n_total,
                     "n_avg": summary["n_avg_measured"], "n_final": summary["n_final"], "tokens": summary["tokens"],
                     "val_loss": summary["final_val_loss"], "seconds": time.time() - t0})
        print(f"rung {rung} {role:<14} seed {plan.run.seed}: val loss {summary['final_val_loss']:.4f} "
              f"({rows[-1]['seconds']:.0f} s)", flush=True)
    return pd.DataFrame(rows)


def report(df: pd.DataFrame, parent) -> str:
    loss = df.pivot_table(index="rung", columns="role", values="val_loss", aggfunc="mean")
    spread = df.groupby(["rung", "role"])["val_loss"].agg(lambda s: s.max() - s.min()).unstack()
    sizes = df[df.role == "sparse"].groupby("rung")[["n_total", "n_avg", "n_final", "tokens"]].first()
    lines = ["| rung | N_total | N_avg | N_final | tokens | sparse | dense@N_avg | dense@N_final | "
             "sparse − dense@N_avg | dense@N_final − sparse |", "|" + "---|" * 10]
    for rung in loss.index:
        s, a, f = (loss.loc[rung, k] for k in ("sparse", "dense@N_avg", "dense@N_final"))
        z = sizes.loc[rung]
        lines.append(f"| {rung} | {z.n_total:,.0f} | {z.n_avg:,.0f} | {z.n_final:,.0f} | {z.tokens:,.0f} | "
                     f"{s:.4f} | {a:.4f} | {f:.4f} | {s - a:+.4f} | {f - s:+.4f} |")
    runs = pd.DataFrame({"loss": df.val_loss, "tokens": df.tokens, "n_avg": df.n_avg, "n_final": df.n_final,
                         "group": df.rung.astype(str)})
    table = compare_forms(runs, forms=("unified", "chinchilla"), grid="coarse")
    fits = "\n".join(f"| {r.form} | {r.rmse:.4f} | {r.heldout_rmse:.4f} |" for r in table.itertuples())
    seeds = sorted(int(s) for s in df.seed.unique())
    noise = (f"the largest spread between seeds of one run is {spread.to_numpy().max():.4f}" if len(seeds) > 1
             else "one seed, so no spread between seeds is measured")
    return "\n".join([
        f"`python bench/study_ladder.py` — parent plan `{parent.name}` (geometric, final sparsity "
        f"{parent.schedule.final_sparsity:.0%}, window {parent.schedule.compute_start:.0%}→"
        f"{parent.schedule.compute_end:.0%} of compute), its 3-rung ladder on the bundled World English Bible "
        f"(byte-level), seeds {seeds}, final validation loss (nats/byte, mean over seeds; {noise}).",
        f"Machine: nproc {os.cpu_count()}, {cpu_model()}, Python "
        f"{platform.python_version()}; {df.seconds.sum() / 60:.1f} min of training, one thread per run.", "",
        *lines, "",
        f"Fits over all runs (5 free parameters each; held-out = leave one rung out). The token budgets take only "
        f"{df.tokens.nunique()} values here, so B and β are barely identified: read the per-rung table first.", "",
        "| form | in-sample RMSE | held-out RMSE |", "|---|---|---|", fits])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", help="parent plan (default: llama2-70m, 80%% sparsity, seed window)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--runs-dir", default="runs/study")
    ap.add_argument("--granularity", choices=["global", "per_layer"], help="override the parent's mask granularity")
    a = ap.parse_args(argv)
    parent = load_plan(a.plan) if a.plan else default_parent()
    if a.granularity:
        parent = parent.model_copy(update={"schedule": parent.schedule.model_copy(
            update={"granularity": a.granularity}), "name": f"{parent.name}-{a.granularity}"})
    runs = [r for seed in a.seeds for r in ladder_with_final_partners(parent, seed)]
    df = train_all(runs, Path(a.runs_dir))
    text = report(df, parent)
    print(text)
    write_section(f"{HEADING}: {parent.name}", text)


if __name__ == "__main__":
    main()
