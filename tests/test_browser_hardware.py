"""Browser regressions for the hardware ledger (Debian chromium via Playwright, as tests/test_browser.py): the advice
when US$ picks a dense plan at the largest lifetime demand (issue 20, item 1), break-even speedups in the comparison
table, and the memory panel."""
from __future__ import annotations

from test_browser import app_url, page_at  # noqa: F401  (fixtures: one server for this module, a session per test)


def _main_text(page) -> str:
    return page.locator("[data-testid='stMain']").inner_text()


def test_dollars_at_the_largest_lifetime_give_advice_that_can_be_followed(page_at):  # noqa: F811
    """US$, unstructured, lifetime at the slider's maximum: the page picks dense and, instead of 'a larger lifetime
    demand shifts the optimum towards sparse models' (no larger value exists), says what would make sparse win."""
    page = page_at()
    page.get_by_role("radio", name="US$").check(force=True)
    slider = page.get_by_role("slider", name="Lifetime inference tokens")
    slider.focus()
    slider.press("End")  # the slider's largest demand, 1e16 tokens
    note = page.locator("[data-testid='stAlert']").filter(has_text="No sparse candidate beats")
    note.wait_for(timeout=90_000)
    assert slider.get_attribute("aria-valuetext") == "1e16"
    text = note.inner_text()
    assert "larger lifetime" not in text and "shifts the optimum" not in text
    assert "when it runs faster than on dense kernels by" in text and "In FLOP a sparse plan" in text


def test_breakeven_rows_and_the_memory_panel(page_at):  # noqa: F811
    page = page_at(1500, 1100)
    row = page.locator("[data-testid='stTable'] tbody tr").filter(has_text="break-even speedup, every phase")
    row.wait_for(timeout=90_000)
    cells = row.locator("td").all_inner_texts()
    assert cells[0].endswith("×") or cells[0] == "unreachable"  # the selected (sparse) plan's speedup
    assert "—" in cells[1:]  # the dense baselines have none
    assert "In FLOP a sparse plan is charged only its non-zero multiplies" in _main_text(page)
    page.get_by_text("Memory: does the selected plan fit").click()  # the toggle
    verdict = page.get_by_text("Training (bf16-mixed, zero3 over 8 × H100 SXM)")
    verdict.wait_for(timeout=60_000)
    assert "GB per GPU" in verdict.inner_text()
    assert page.get_by_text("Roofline per token").is_visible()
