"""Export a plan to the stacks people train with: the seed's MaxText fork, PyTorch torch.ao, llm-compressor and litgpt.

`export_plan(plan, target, out_dir, devices)` is the one entry the CLI (`python -m planner export`) and the app's
Export page both call. Each target module's `build(plan, devices)` returns an `Export`: the target's own files as
text, what the files preserve exactly, where their pruning approximates the plan (with the numbers: what differs and
the planner's N_avg of what the files run), the target's other differences (optimizer details, rounding), and the
command that launches them. A plan the target cannot express faithfully raises PlannerInputError with one line (the
CLI's exit 2); so does any approximation when `exact=True`. Everything here is pure: the torch-ao file imports torch
only when the user runs it.
"""
from __future__ import annotations

from pathlib import Path

from planner.errors import PlannerInputError
from planner.export import litgpt, llm_compressor, maxtext, torchao
from planner.export.base import Export, readme
from planner.plan import TrainingPlan

BUILDERS = {"maxtext": maxtext.build, "torch-ao": torchao.build, "llm-compressor": llm_compressor.build,
            "litgpt": litgpt.build}
TARGETS = tuple(BUILDERS)
ALIASES = {"torchao": "torch-ao"}  # the target's first name; it writes PyTorch's torch.ao.pruning, not torchao
__all__ = ["ALIASES", "TARGETS", "Export", "export_plan"]


def export_plan(plan: TrainingPlan, target: str, out_dir: str | Path | None = None, devices: int = 1,
                exact: bool = False) -> Export:
    """Build the target's files (with README.md) and write them into out_dir when given; `exact` refuses any
    approximation of the pruning."""
    target = ALIASES.get(target, target)
    if target not in BUILDERS:
        raise PlannerInputError(f"export --to {target!r}: use one of {', '.join(TARGETS)}")
    if devices < 1:
        raise PlannerInputError(f"export --devices {devices}: must be a positive integer")
    ex = BUILDERS[target](plan, devices)
    if exact and ex.approx:
        raise PlannerInputError(f"{target}: plan '{plan.name}' would be approximated: {ex.approx[0]}")
    ex = Export(ex.target, {**ex.files, "README.md": readme(plan, ex)}, ex.launch, ex.n_avg, ex.exact, ex.approx,
                ex.notes)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, text in ex.files.items():
            (out / name).write_text(text, encoding="utf-8")
    return ex
