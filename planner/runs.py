"""The runs table: finished training runs (loss, tokens, parameter counts) that scaling laws are fitted to.

Canonical columns of a validated table:

* ``loss``, ``tokens``: final loss and training tokens (required);
* ``n_avg``: average parameter count over training (the unified law's N); dense runs may give ``n`` instead;
* ``n_final``: parameter count at the end (non-zero weights); defaults to ``n`` for dense runs;
* ``sparsity``: final sparsity in [0, 1), default 0;
* ``n_total``: every weight of the model, pruned or not (the effective-parameter form's N); defaults to ``n_final``
  for dense runs;
* ``group`` (e.g. model size, for leave-one-group-out) and ``name``: optional labels.

A form needs its N column (`planner.laws.N_COLUMN`): ``unified`` reads ``n_avg``, ``chinchilla`` reads ``n`` else
``n_final``, ``frantar`` reads ``n_final`` and ``sparsity``.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd

from planner.errors import PlannerInputError
from planner.io import not_regular
from planner.laws import N_COLUMN, PARAM_NAMES

# The columns a study's or the app's runs table hands the fitter (`load_runs` keeps more when given).
RUN_COLUMNS = ["loss", "tokens", "n_avg", "n_final", "sparsity", "group", "name"]
_NUMERIC = ("loss", "tokens", "n", "n_avg", "n_final", "n_total", "sparsity")
# Largest plausible values: 1e16 parameters, 1e18 tokens (far beyond any run), a loss of 1e3 nats.
_CEILING = {"n_avg": 1e16, "n_final": 1e16, "n_total": 1e16, "tokens": 1e18, "loss": 1e3}


def load_runs(source, form: str = "unified", n_held: int = 0) -> pd.DataFrame:
    """Read and validate a runs CSV path (or a DataFrame) for fitting ``form``; returns canonical columns.

    ``n_held``: parameters the fit holds fixed, which need no runs. Raises PlannerInputError naming the file and
    column for anything a fit cannot use.
    """
    if form not in PARAM_NAMES:
        raise PlannerInputError(f"unknown law form {form!r}: use one of {sorted(PARAM_NAMES)}")
    label, raw, header = _read(source)
    raw = raw.rename(columns=lambda c: str(c).strip()).reset_index(drop=True)
    names = [str(c).strip() for c in header]
    dup = [c for i, c in enumerate(names) if c and c in names[:i]]
    if dup:  # ' loss' and 'loss' are one column once padding is stripped; pandas would rename the second 'loss.1'
        raise PlannerInputError(f"{label}: column '{dup[0]}' appears more than once in the header")
    if "n" in raw.columns:  # a dense run's single count stands for both
        for col in ("n_avg", "n_final"):
            raw[col] = raw[col].fillna(raw["n"]) if col in raw.columns else raw["n"]
    needed = ["loss", "tokens", N_COLUMN[form]] + (["sparsity"] if form == "frantar" else [])
    for col in needed:
        if col not in raw.columns:
            hint = " (or 'n' for dense runs)" if col in ("n_avg", "n_final") else ""
            raise PlannerInputError(f"{label}: missing column '{col}'{hint} needed by the {form} form")
    out = pd.DataFrame(index=pd.RangeIndex(len(raw)))
    for col in _NUMERIC:
        if col in raw.columns and col != "n":
            out[col] = _numeric(raw[col], label, col, required=col in needed)
    if "sparsity" not in out.columns:
        out["sparsity"] = 0.0
    for col in ("loss", "tokens", "n_avg", "n_final", "n_total"):
        if col in out.columns:
            bad = np.flatnonzero(~(out[col] > 0) & out[col].notna())
            if bad.size:
                raise PlannerInputError(f"{label}: column '{col}' must be positive; row {bad[0] + 1} has "
                                        f"{float(out[col].iloc[bad[0]]):g}")
            big = np.flatnonzero(out[col] > _CEILING[col])
            if big.size:
                raise PlannerInputError(f"{label}: column '{col}' has {out[col].iloc[big[0]]:g} in row {big[0] + 1}, "
                                        f"above the plausible {_CEILING[col]:g} (raw counts, not logs or scaled units)")
    s = out["sparsity"]
    bad = np.flatnonzero(((s < 0) | (s >= 1)) & s.notna())
    if bad.size:
        raise PlannerInputError(f"{label}: column 'sparsity' must lie in [0, 1); row {bad[0] + 1} has "
                                f"{float(s.iloc[bad[0]]):g}")
    if form != "frantar":
        out["sparsity"] = s.fillna(0.0)
    if "n_final" in out.columns:  # a dense run's total is its final count
        total = out["n_total"] if "n_total" in out.columns else pd.Series(np.nan, index=out.index)
        out["n_total"] = total.fillna(out["n_final"].where(out["sparsity"].fillna(0.0) == 0))
    for col in ("group", "name"):
        if col in raw.columns:
            out[col] = raw[col].astype(str).to_numpy()
    if "name" not in out.columns:
        out["name"] = [f"run{i + 1}" for i in range(len(out))]
    n_params = len(PARAM_NAMES[form]) - n_held
    if len(out) < n_params:
        free = f" free parameters ({n_held} held)" if n_held else " parameters"
        runs = f"{len(out)} run" + "s" * (len(out) != 1)
        raise PlannerInputError(f"{label}: {runs}, but the {form} form has {n_params}{free}; "
                                f"give at least {n_params} runs")
    return out


def _read(source) -> tuple[str, pd.DataFrame, list]:
    """(label, table, header as written): pandas renames a repeated column, so the header is read as text too."""
    if isinstance(source, pd.DataFrame):
        return "runs table", source.copy(), list(source.columns)
    path = Path(source)
    if not path.is_file():
        raise PlannerInputError(f"{path}: is {not_regular(path.stat().st_mode)}, not a runs file" if path.exists()
                                else f"{path}: runs file not found")
    try:
        table = pd.read_csv(path, dtype=str, skipinitialspace=True)
        with open(path, newline="", encoding="utf-8-sig") as f:
            return path.name, table, next(csv.reader(f), [])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PlannerInputError(f"{path.name}: not a readable CSV ({_csv_reason(exc)})") from None


def _csv_reason(exc: Exception) -> str:
    """pandas' parser message in the user's terms: which line has how many fields against the header."""
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
    if m:
        return f"line {m[2]} has {m[3]} comma-separated fields but the header has {m[1]}"
    if isinstance(exc, pd.errors.EmptyDataError):
        return "the file is empty"
    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8 text"
    return str(exc).splitlines()[0]


def _numeric(values: pd.Series, label: str, col: str, required: bool) -> pd.Series:
    """Parse a column as floats; blanks are NaN (an error where the column is required), text is always an error."""
    blank = values.isna() | (values.astype(str).str.strip() == "")
    text = values.astype(str).str.strip()
    parsed = pd.to_numeric(text.where(~blank), errors="coerce")
    bad = np.flatnonzero(parsed.isna() & ~blank)
    if bad.size:
        raise PlannerInputError(f"{label}: column '{col}' has a non-numeric value {text.iloc[bad[0]]!r} in row "
                                f"{bad[0] + 1}")
    if required and blank.any():
        raise PlannerInputError(f"{label}: column '{col}' is empty (NaN) in row {np.flatnonzero(blank)[0] + 1}")
    inf = np.flatnonzero(np.isinf(parsed.to_numpy(dtype=float)))
    if inf.size:
        raise PlannerInputError(f"{label}: column '{col}' has an infinite value in row {inf[0] + 1}")
    return parsed.astype(float).reset_index(drop=True)


def seed_pairs() -> pd.DataFrame:
    """The seed paper's four ~1B sparse / small-dense pairs as a validated runs table (see planner/data/README.md).

    Counts are total parameters: the never-pruned part (total - linear) plus the linear weights, averaged over
    training for ``n_avg`` and non-zero at the end for ``n_final``. ``group`` is the pair.
    """
    card = pd.read_csv(Path(__file__).parent / "data" / "seed_1b_pairs.csv", comment="#")
    fixed = card["total_params"] - card["linear_params"]
    table = pd.DataFrame({
        "loss": card["final_train_loss"], "tokens": card["tokens"],
        "n_avg": card["avg_linear_params"] + fixed, "n_final": card["nonzero_linear_params"] + fixed,
        "n_total": card["total_params"], "sparsity": card["final_sparsity"], "group": card["pair"],
        "name": card["model"],
    })
    return load_runs(table, form="frantar")


def in_regime(df: pd.DataFrame) -> pd.DataFrame:
    """A study's runs (train_backend.study's runs.csv) that the law comparison uses: the ladder, its seeds and the
    pairs (quick, full: >= 20 tokens per N_avg); not the tiny preset (2 tokens per N_avg) nor the ablations."""
    return df[~df["kind"].isin(["tiny", "ablation"])]
