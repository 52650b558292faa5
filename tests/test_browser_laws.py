"""Real-browser regression for the Scaling laws page (issue #18 'Why', #20 item 2), as tests/test_browser.py drives
the app: on the bundled seed pairs with "Hold α, β at a preset" ticked, no warning advises holding the exponents,
and each disabled "Use as the working law" button has its reason beside it."""
from __future__ import annotations

from test_browser import app_url, page_at  # noqa: F401  (fixtures: one server for the module, a fresh session)

from bench.browser import go


def test_held_exponents_silence_the_advice_and_disabled_buttons_say_why(page_at):  # noqa: F811
    page = page_at(1440, 1400)
    go(page, "Scaling laws")
    assert page.get_by_role("checkbox", name="Hold α, β at a preset").is_checked()
    alerts = page.locator("[data-testid='stAlert']").all_inner_texts()
    assert alerts and not any("Hold the exponents" in a for a in alerts), alerts  # the B warnings remain, true
    buttons = page.get_by_role("button", name="Use as the working law")
    disabled = [b for b in buttons.all() if b.is_disabled()]
    assert disabled  # the held seed-pair fits cannot plan (B runs to ~0)
    notes = page.get_by_text("Not offered: this fit cannot plan (")
    assert notes.count() == len(disabled)
    for button, note in zip(disabled, notes.all()):  # beside the button: same row, to its right
        b, n = button.bounding_box(), note.bounding_box()
        assert n["x"] > b["x"] + b["width"] - 1 and abs((n["y"] + n["height"] / 2) - (b["y"] + b["height"] / 2)) < 40
