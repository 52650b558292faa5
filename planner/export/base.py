"""What every exporter shares: the Export record, the plan's step grid and per-step densities, N_avg notes."""
from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field

import numpy as np

from planner.plan import TrainingPlan, derive
from planner.schedules import Schedule, n_of_t


@dataclass(frozen=True)
class Export:
    target: str
    files: dict[str, str]  # file name -> text; README.md is added by export_plan
    launch: str  # how to run the files: a shell command (Python calls for llm-compressor)
    n_avg: float  # N_avg, in the plan's convention, of the schedule the files run
    exact: list[str] = field(default_factory=list)  # what the target preserves exactly
    approx: list[str] = field(default_factory=list)  # where the pruning differs from the plan, precisely
    notes: list[str] = field(default_factory=list)  # the target's other differences: optimizer, rounding, tokenizer

    def zip_bytes(self) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, text in self.files.items():
                zf.writestr(name, text)
        return buf.getvalue()


def exported_n_avg(plan: TrainingPlan, schedule: Schedule) -> float:
    """N_avg of `schedule` on the plan's model, under the plan's counting convention (planner.plan.derive)."""
    return derive(plan.model, schedule, plan.derived.n_convention).n_avg


def stem(plan: TrainingPlan) -> str:
    """The plan's name as a file-name stem (anything but letters, digits, '.', '-' and '_' becomes '_')."""
    return re.sub(r"[^\w.-]+", "_", plan.name)


def module_name(plan: TrainingPlan, suffix: str) -> str:
    """A Python module name for one of the plan's files: the name's non-word characters become '_'."""
    return re.sub(r"\W", "_", plan.name).lstrip("0123456789") + suffix


def plan_window(plan: TrainingPlan) -> tuple[int, int, int | None]:
    """(start_step, end_step, every_steps) of the plan's window; a hand-written plan may give only fractions."""
    s, steps = plan.schedule, plan.budget.steps
    start = s.start_step if s.start_step is not None else round(s.start * steps)
    end = s.end_step if s.end_step is not None else round(s.end * steps)
    every = s.every_steps if s.every_steps is not None else (round(s.every * steps) if s.every else None)
    return start, end, every


def step_densities(plan: TrainingPlan) -> np.ndarray:
    """Density in force at each optimizer step, from the planner's schedule (what a step-based trainer applies)."""
    steps = plan.budget.steps
    return plan.schedule.schedule().density_at_step(np.arange(steps), steps)


def change_points(densities: np.ndarray) -> list[tuple[int, float]]:
    """(first step, density) at step 0 and wherever the per-step density changes."""
    steps = np.flatnonzero(np.concatenate([[True], densities[1:] != densities[:-1]]))
    return [(int(s), float(densities[s])) for s in steps]


KNOT_TOL = 1e-6  # how far a knot table may stray from the per-step density (1,000 weights of a 1B model)


def _fits(densities: np.ndarray, i: int, j: int, tol: float) -> bool:
    """Whether the straight line from step i to step j stays within tol of every step's density between them."""
    line = densities[i] + (densities[j] - densities[i]) / (j - i) * np.arange(j - i + 1)
    return bool(np.max(np.abs(line - densities[i:j + 1])) <= tol)


def knots(densities: np.ndarray, tol: float = KNOT_TOL) -> list[tuple[int, float]]:
    """(step, density) knots whose linear interpolation is within tol of the density at every step: exact (two
    knots per jump) for a piecewise-constant schedule, a few hundred for a continuous one however many steps."""
    n, i, out = len(densities), 0, [0]
    while i < n - 1:  # the longest line from i that fits: doubling its length, then bisecting
        lo, span, hi = i + 1, 1, None
        while lo < n - 1:
            cand = min(i + 2 * span, n - 1)
            if not _fits(densities, i, cand, tol):
                hi = cand
                break
            lo, span = cand, 2 * span
        while hi is not None and hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if _fits(densities, i, mid, tol) else (lo, mid)
        out.append(lo)
        i = lo
    return [(s, float(densities[s])) for s in out]


def step_n_avg(plan: TrainingPlan, densities) -> float:
    """N_avg of a per-step density table: the mean over steps, counted as the plan counts."""
    fixed, prunable = plan.model.n_params(plan.derived.n_convention)
    return float(n_of_t(np.mean(densities), fixed, prunable))


def n_avg_note(plan: TrainingPlan, n_avg: float) -> str:
    """'N_avg X (the plan's)' or 'N_avg X instead of the plan's Y (+d%)': the number a user checks."""
    want = plan.derived.n_avg
    if abs(n_avg - want) <= 1e-9 * want:
        return f"N_avg {n_avg:,.0f} (the plan's)"
    return f"N_avg {n_avg:,.0f} instead of the plan's {want:,.0f} ({(n_avg / want - 1) * 100:+.4f}%)"


def readme(plan: TrainingPlan, ex: Export) -> str:
    """The README.md of an export: the plan, the launch command, what is exact and what differs."""
    lines = [f"# {plan.name} for {ex.target}", "",
             f"Exported by sparseplan from plan `{plan.name}`: {plan.model.n_layer} layers x d_model "
             f"{plan.model.d_model}, {plan.schedule.shape} schedule to final sparsity {plan.schedule.final_sparsity:g} "
             f"({plan.schedule.granularity}, {plan.schedule.pattern}), {plan.budget.steps:,} steps of "
             f"{plan.budget.batch_size} x {plan.budget.seq_len} tokens; plan N_avg {plan.derived.n_avg:,.0f} "
             f"({plan.derived.n_convention} parameters).", "", "## Launch", "", "```", ex.launch, "```", "",
             "## Preserved exactly", ""]
    lines += [f"- {x}" for x in ex.exact] or ["- (nothing beyond the shape)"]
    lines += ["", "## Differs from the plan", ""]
    lines += [f"- {x}" for x in ex.approx] or ["- pruning: nothing, these files prune as the plan does"]
    lines += [f"- {x}" for x in ex.notes]
    lines += ["", f"Files: {', '.join(sorted(ex.files))}.", ""]
    return "\n".join(lines)
