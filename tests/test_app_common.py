"""Helpers shared by the app tests (AppTest on the real entry point, chart specs), and tests of app/ui/common."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from streamlit.testing.v1 import AppTest

from app.ui.common import error_message, human, usd
from planner.errors import PlannerInputError
from planner.schedules import Schedule

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


def open_page(page: str | None = None, timeout: float = 24 * 3600) -> AppTest:
    """The app from its entry point, switched to `page` (e.g. 'views/schedule.py'); None keeps the default page.
    AppTest needs a time limit per script run; a day is none in practice (a busy machine is only slower)."""
    at = AppTest.from_file(MAIN, default_timeout=timeout).run()
    if page:
        at.switch_page(page).run()
    assert_clean(at)
    return at


def assert_clean(at: AppTest):
    """No exception element anywhere (a traceback shown to the user)."""
    assert not at.exception, [e.value for e in at.exception]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def chart_specs(at: AppTest) -> list[dict]:
    """Vega-Lite specs of every Altair chart on the page (datasets dropped)."""
    return [{k: v for k, v in json.loads(c.proto.spec).items() if k != "datasets"} for c in at.get("vega_lite_chart")]


def encodings(spec: dict) -> dict[str, dict]:
    """Encodings of every layer merged by channel, to look up axes by name; a titled encoding (the axis the
    reader sees) wins over untitled helper layers such as rules and bands."""
    out: dict[str, dict] = {}
    for layer in spec.get("layer", [spec]):
        for channel, enc in layer.get("encoding", {}).items():
            if channel not in out or ("title" in enc and "title" not in out[channel]):
                out[channel] = enc
    return out


def test_human_counts():
    assert human(1.234e9) == "1.23B" and human(760e6) == "760M" and human(12) == "12"
    assert human(float("nan")) == "—"
    assert usd(2.5e6) == "$2.50M" and usd(1234) == "$1,234"


def test_error_message_names_the_field():
    with pytest.raises(ValidationError) as err:
        Schedule(shape="linear", final_sparsity=0.5, start=0.8, end=0.2)
    assert "window end 0.2 is before its start 0.8" in error_message(err.value)
    assert error_message(PlannerInputError("x.csv: missing column 'loss'")) == "x.csv: missing column 'loss'"
