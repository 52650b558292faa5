"""Speed of the default Pareto page as a user feels it, measured in Debian's chromium (Playwright, bench/browser.py):

* keypress -> updated headline metric: Enter on a new target loss until the "Selected plan: predicted loss" value
  changes in the DOM (a MutationObserver timestamps it in the page, so polling adds nothing), and until the rerun
  has finished (chart included);
* navigation -> first chart: from a click on the sidebar's Pareto link (coming from the Export page) to the chart
  drawn, and from `page.goto` in a fresh tab (the browser loads Streamlit's frontend too); the first load after the
  server starts (imports, cold caches) reported apart from the later ones;
* sidebar link -> Export page complete (its last download button drawn and the rerun finished), the first visit
  (each stack's files written) apart from the revisits (cached).

Prints a Markdown section and, with --write, replaces the `## App` section of bench/RESULTS.md (others untouched).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.browser import browser, go, open_app, serve_app, settle  # noqa: E402
from bench.results import cpu_model, write_section  # noqa: E402

TARGETS = tuple(round(2.3 + 0.025 * k, 3) for k in range(36))  # each a fresh search (cache miss)
LOADS = 6

# Timestamps, in the page's own clock, of Enter on the target input and of the headline value changing.
ARM_JS = """() => {
  window.__t0 = null; window.__t1 = null;
  const input = document.querySelector('input[aria-label="Target loss (nats/token)"]');
  input.addEventListener('keydown', e => { if (e.key === 'Enter') window.__t0 = performance.now(); }, {once: true});
  const value = () => document.querySelector('[data-testid="stMetricValue"]');
  const before = value().innerText;
  const obs = new MutationObserver(() => {
    if (window.__t0 !== null && value() && value().innerText !== before) {
      window.__t1 = performance.now(); obs.disconnect();
    }
  });
  obs.observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


IDLE_JS = "!document.querySelector('[data-testid=\"stStatusWidget\"]')"  # no script running


def keypress_times(page, targets=TARGETS) -> tuple[list[float], list[float]]:
    """(to headline, to rerun finished) in seconds, one per target."""
    target = page.get_by_role("spinbutton", name="Target loss (nats/token)")
    headline, finished = [], []
    for value in targets:
        target.fill(f"{value:.3f}")
        page.evaluate(ARM_JS)
        target.press("Enter")
        page.wait_for_function("window.__t1 !== null", timeout=60_000)
        page.wait_for_function(IDLE_JS, timeout=60_000)  # polled every animation frame (~16 ms)
        t0, t1, t2 = page.evaluate("[window.__t0, window.__t1, performance.now()]")
        headline.append((t1 - t0) / 1000)
        finished.append((t2 - t0) / 1000)
        settle(page)
    return headline, finished


def first_chart(ctx, url: str) -> float:
    """Seconds from navigation to the first chart's drawing (svg or canvas) in the DOM."""
    page = ctx.new_page()
    t0 = time.perf_counter()
    page.goto(url)
    page.locator("[data-testid='stVegaLiteChart'] svg, [data-testid='stVegaLiteChart'] canvas").first.wait_for(
        timeout=120_000)
    elapsed = time.perf_counter() - t0
    settle(page)
    page.close()
    return elapsed


def link_to_chart(page) -> float:
    """Seconds from clicking the sidebar's Pareto link (on the Export page) to the chart drawn."""
    go(page, "Export")
    t0 = time.perf_counter()
    page.get_by_role("link", name="Pareto planner").click()
    page.locator("[data-testid='stVegaLiteChart'] svg, [data-testid='stVegaLiteChart'] canvas").first.wait_for(
        timeout=120_000)
    elapsed = time.perf_counter() - t0
    settle(page)
    return elapsed


def export_page(page) -> float:
    """Seconds from clicking the sidebar's Export link (on the Pareto page) to the page complete: the ladder's last
    download button drawn and the rerun finished."""
    go(page, "Pareto planner")
    t0 = time.perf_counter()
    page.get_by_role("link", name="Export").click()
    page.get_by_role("button", name="Download ladder (multi-document YAML)").wait_for(timeout=180_000)
    page.wait_for_function(IDLE_JS, timeout=180_000)
    return time.perf_counter() - t0


def measure() -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp, serve_app(Path(tmp) / "runs") as url, \
            browser(Path(tmp) / "profile", 1440, 900) as ctx:
        cold = [first_chart(ctx, url)]
        warm = [first_chart(ctx, url) for _ in range(LOADS)]
        page = ctx.new_page()
        open_app(page, url)
        headline, finished = keypress_times(page)
        revisited, _ = keypress_times(page, TARGETS[:12])  # the same targets again: cached searches
        links = [link_to_chart(page) for _ in range(LOADS)]
        exports = [export_page(page) for _ in range(LOADS + 1)]
    return {"target loss keypress → headline metric updated": headline,
            "target loss keypress → rerun finished (chart drawn)": finished,
            "revisited target (cached search) → headline metric updated": revisited,
            "sidebar link (from Export) → Pareto chart drawn": links,
            "page load (new tab) → first chart, first load after server start": cold,
            "page load (new tab) → first chart, later loads": warm,
            "sidebar link → Export page complete, first visit (exports written)": exports[:1],
            "sidebar link → Export page complete, revisits": exports[1:]}


def report(results: dict[str, list[float]]) -> str:
    lines = ["## App", "",
             "Default Pareto page in Debian's chromium (headless, Playwright; `python bench/bench_app.py`): the "
             "default search (5 schedules × 10 sparsities over the width grid, refined), each of 36 target changes a "
             "fresh search. Machine: "
             f"{os.cpu_count()} cores (nproc), {cpu_model()}, Python {platform.python_version()}; 1-minute load "
             f"average {os.getloadavg()[0]:.1f} at the end (any other job on the two cores slows these figures: read them "
             "as upper bounds when it is above 1). Targets (quiet machine): keypress → headline ≤ 200 ms median, new tab → "
             "first chart ≤ 2 s, Export page ≤ 1 s.", "",
             "| measure | median ms | min ms | max ms | n |", "| --- | --- | --- | --- | --- |"]
    for name, times in results.items():
        lines.append(f"| {name} | {1000 * statistics.median(times):.0f} | {1000 * min(times):.0f} | "
                     f"{1000 * max(times):.0f} | {len(times)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update the ## App section of bench/RESULTS.md")
    args = parser.parse_args()
    text = report(measure())
    print(text)
    if args.write:
        write_section("## App", text)
