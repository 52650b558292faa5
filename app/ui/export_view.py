"""Bytes behind the Export page's download buttons: the plan as YAML/JSON, its scaled-down validation ladder, and
the plan as other stacks' files (planner.export, the same function the CLI's `export` calls)."""
from __future__ import annotations

import io
import zipfile

import pandas as pd
import yaml

from planner.errors import PlannerInputError
from planner.export import TARGETS, Export, export_plan
from planner.ladder import scale_down
from planner.plan import TrainingPlan, plan_to_dict, plan_to_json, plan_to_yaml


def plan_yaml_bytes(plan: TrainingPlan) -> bytes:
    return plan_to_yaml(plan).encode("utf-8")


def plan_json_bytes(plan: TrainingPlan) -> bytes:
    return plan_to_json(plan).encode("utf-8")


LADDER_MINUTES = 180.0  # default CPU budget of the ladder: three rungs of the default frontier plan fit (~120 min)


def ladder(plan: TrainingPlan, rungs: int = 3, budget_minutes: float = LADDER_MINUTES) -> list[TrainingPlan]:
    """The plan's validation ladder at its own tokens per N_avg, sized to `budget_minutes` of one-thread CPU."""
    return scale_down(plan, rungs=rungs, budget_minutes=budget_minutes)


def ladder_yaml_bytes(plans: list[TrainingPlan]) -> bytes:
    """All rungs as one multi-document YAML file, in ladder order (sparse, then its dense partner)."""
    return yaml.safe_dump_all([plan_to_dict(p) for p in plans], sort_keys=False, allow_unicode=True).encode("utf-8")


def ladder_zip_bytes(plans: list[TrainingPlan]) -> bytes:
    """One YAML file per rung, named after the rung, ready for `python -m train_backend train`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in plans:
            zf.writestr(f"{p.name}.yaml", plan_to_yaml(p))
    return buf.getvalue()


def ladder_table(plans: list[TrainingPlan]) -> pd.DataFrame:
    """One row per rung for display."""
    return pd.DataFrame([{"plan": p.name, "layers": p.model.n_layer, "d_model": p.model.d_model,
                          "d_ff": p.model.d_ff, "final sparsity": p.schedule.final_sparsity,
                          "N_avg": round(p.derived.n_avg), "N_final": round(p.derived.n_final), "steps": p.budget.steps,
                          "tokens": p.budget.tokens} for p in plans])


LABELS = {"maxtext": "MaxText fork (seed)", "torch-ao": "PyTorch torch.ao", "llm-compressor": "llm-compressor",
          "litgpt": "litgpt"}


def target_exports(plan: TrainingPlan, devices: int = 1) -> dict[str, Export | str]:
    """Each target's export, or the one-line reason it cannot express the plan."""
    out: dict[str, Export | str] = {}
    for target in TARGETS:
        try:
            out[target] = export_plan(plan, target, None, devices)
        except PlannerInputError as exc:
            out[target] = str(exc)
    return out


def caveats_markdown(ex: Export) -> str:
    """What differs from the plan, as markdown bullets: the pruning's approximations in bold, then other notes."""
    approx = [f"- **{x}**" for x in ex.approx] or ["- **prunes exactly as the plan does**"]
    return "\n".join(approx + [f"- {x}" for x in ex.notes])
