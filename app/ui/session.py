"""A session as a file and a view as a link: the working law, the Pareto page's inputs, the pick and the pinned plans
to JSON and back; the Pareto page's inputs and pick to URL query parameters and back."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
from pydantic import ValidationError

from app.ui.common import error_message
from app.ui.inputs import BUDGETS, LIFETIMES
from app.ui.pareto_view import HARDWARE_CHOICES, SCHEDULE_CHOICES, PlannerInputs
from app.ui.pins import Pin
from app.ui.working_law import WorkingLaw
from planner.errors import PlannerInputError
from planner.laws import Law
from planner.plan import plan_from_text, plan_to_json
from planner.uncertainty import LawPosterior
from planner.uncertainty.region import Region

VERSION = 2  # 2: a fitted law keeps its posterior (draws, noise, region) instead of bootstrap samples
_TUPLES = ("speedups", "schedules")  # PlannerInputs fields that JSON gives back as lists


def _frame(df: pd.DataFrame | None) -> dict | None:
    return None if df is None else df.to_dict(orient="split", index=False)


def _unframe(d: dict | None) -> pd.DataFrame | None:
    return None if d is None else pd.DataFrame(d["data"], columns=d["columns"])


def _posterior_to_dict(post: LawPosterior | None) -> dict | None:
    if post is None:
        return None
    region = None if post.region is None else {"n": post.region.runs[0].tolist(), "tokens": post.region.runs[1].tolist(),
                                               "margin": post.region.margin, "source": post.region.source}
    return {"draws": post.draws.tolist(), "rel_noise_sd": post.rel_noise_sd, "method": post.method, "region": region,
            "preset": post.preset}


def _posterior_from_dict(d: dict | None, law: Law) -> LawPosterior | None:
    if d is None:
        return None
    r = d.get("region")
    region = None if r is None else Region(r["n"], r["tokens"], float(r["margin"]), str(r["source"]))
    return LawPosterior(law, np.asarray(d["draws"], float), float(d["rel_noise_sd"]), region, str(d["method"]),
                        bool(d.get("preset", False)))


def law_to_dict(working: WorkingLaw) -> dict:
    return {"label": working.label, "law": working.law.model_dump(mode="json"), "runs": _frame(working.runs),
            "posterior": _posterior_to_dict(working.posterior), "no_interval": working.no_interval}


def law_from_dict(d: dict) -> WorkingLaw:
    law = Law.model_validate(d["law"])
    return WorkingLaw(str(d["label"]), law, _posterior_from_dict(d.get("posterior"), law), _unframe(d.get("runs")),
                      str(d.get("no_interval", WorkingLaw.no_interval)))


def inputs_from_dict(d: dict) -> PlannerInputs:
    known = {f.name for f in dataclasses.fields(PlannerInputs)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise PlannerInputError(f"inputs.{unknown[0]}: not an input of the Pareto page")
    d = {k: tuple(v) if k in _TUPLES and v is not None else v for k, v in d.items()}
    return PlannerInputs(**d)


def session_json(inputs: PlannerInputs, working: WorkingLaw, selected: str | None, pins: dict[str, Pin]) -> bytes:
    """The session as one JSON document (a fitted law keeps its posterior and runs: intervals survive)."""
    doc = {"sparseplan_session": VERSION, "inputs": dataclasses.asdict(inputs), "working_law": law_to_dict(working),
           "selected": selected,
           "pins": [{"label": name, "row": p.row.to_dict(), "plan": json.loads(plan_to_json(p.plan))}
                    for name, p in pins.items()]}
    # Python's float repr round-trips exactly (numpy scalars in frames and rows become Python numbers).
    return json.dumps(doc, indent=1, default=lambda x: x.item()).encode("utf-8")


def load_session(data: bytes, name: str) -> tuple[PlannerInputs, WorkingLaw, str | None, dict[str, Pin]]:
    """A saved session back; anything else raises PlannerInputError with one line naming the file and the field."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("sparseplan_session") != VERSION:
            raise PlannerInputError(f"not a saved session of this version (no 'sparseplan_session': {VERSION})")
        working = law_from_dict(doc["working_law"])
        inputs = dataclasses.replace(inputs_from_dict(doc["inputs"]), law=working.key)
        pins = {str(p["label"]): Pin(pd.Series(p["row"]), plan_from_text(json.dumps(p["plan"]), name, fmt="json"))
                for p in doc.get("pins", [])}
        selected = doc.get("selected")
    except PlannerInputError as exc:
        raise PlannerInputError(f"{name}: {exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError, ValidationError) as exc:  # JSON, fields, frames
        what = f"missing field {exc}" if isinstance(exc, KeyError) else error_message(exc)
        raise PlannerInputError(f"{name}: {what.splitlines()[0]}") from None
    return inputs, working, selected if isinstance(selected, str) else None, pins


# URL query parameters: short names, only where an input differs from its default (a short link).
QUERY = {"mode": "mode", "target": "target_loss", "budget": "budget_flops", "lifetime": "lifetime_tokens",
         "hw": "hardware", "price": "usd_per_gpu_hour", "mfu": ("mfu_train", "mfu_prefill", "mfu_decode"),
         "pattern": "pattern", "speedups": "speedups", "schedules": "schedules", "units": "units"}
_DEFAULT = PlannerInputs()


def _value(inputs: PlannerInputs, field) -> object:
    return tuple(getattr(inputs, f) for f in field) if isinstance(field, tuple) else getattr(inputs, field)


def to_query(inputs: PlannerInputs, selected: str | None) -> dict[str, str]:
    """The inputs that differ from the defaults, and the picked plan, as query parameters."""
    out = {}
    for key, field in QUERY.items():
        v = _value(inputs, field)
        if v != _value(_DEFAULT, field) and v is not None:
            out[key] = ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v) if isinstance(v, tuple) \
                else (f"{v:g}" if isinstance(v, float) else str(v))
    if selected:
        out["plan"] = selected
    return out


def _number(key: str, text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        x = float("nan")
    if not math.isfinite(x):
        raise PlannerInputError(f"link parameter '{key}': {text[:40]!r} is not a finite number")
    return x


def from_query(params: dict[str, str]) -> tuple[PlannerInputs, str | None]:
    """A link's inputs and pick; a value that cannot be read raises PlannerInputError naming the parameter."""
    over: dict = {}
    for key, text in params.items():
        field = QUERY.get(key)
        if field is None:
            continue
        if key == "schedules":
            over[field] = tuple(s.strip() for s in text.split(",") if s.strip())
        elif key in ("mfu", "speedups"):
            values = tuple(_number(key, x) for x in text.split(","))
            if len(values) != 3:
                raise PlannerInputError(f"link parameter '{key}': {text[:40]!r} is not three numbers")
            over |= dict(zip(field, values)) if key == "mfu" else {field: values}
        elif isinstance(getattr(_DEFAULT, field), str):
            over[field] = text
        else:
            over[field] = _number(key, text)
    inputs = dataclasses.replace(_DEFAULT, **over)
    choices = {"mode": ("mode", ("loss", "budget")), "pattern": ("pattern", ("unstructured", "2:4")),
               "units": ("units", ("flops", "usd")), "hw": ("hardware", HARDWARE_CHOICES),
               "budget": ("budget_flops", BUDGETS), "lifetime": ("lifetime_tokens", LIFETIMES)}
    for key, (field, allowed) in choices.items():
        if getattr(inputs, field) not in allowed:
            raise PlannerInputError(f"link parameter '{key}': {params[key][:40]!r} is not one of the page's choices")
    bad = [s for s in inputs.schedules if s not in SCHEDULE_CHOICES]
    if bad:
        raise PlannerInputError(f"link parameter 'schedules': {bad[0]!r} is not a schedule the page offers")
    return inputs, params.get("plan") or None
