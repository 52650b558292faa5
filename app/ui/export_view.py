"""Bytes behind the Export page's download buttons: the plan as YAML/JSON and its scaled-down validation ladder."""
from __future__ import annotations

import io
import zipfile

import pandas as pd
import yaml

from planner.ladder import scale_down
from planner.plan import TrainingPlan, plan_to_dict, plan_to_json, plan_to_yaml


def plan_yaml_bytes(plan: TrainingPlan) -> bytes:
    return plan_to_yaml(plan).encode("utf-8")


def plan_json_bytes(plan: TrainingPlan) -> bytes:
    return plan_to_json(plan).encode("utf-8")


def ladder(plan: TrainingPlan, rungs: int = 3) -> list[TrainingPlan]:
    return scale_down(plan, rungs=rungs)


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
