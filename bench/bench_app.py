"""Re-render time of the default Pareto page after an input change, measured with Streamlit's AppTest.

AppTest runs the real script (st.navigation, the page, its cached search, the Altair spec) without a browser, so
the figure is the server-side rerun: what the user waits for before the browser redraws. Prints a Markdown section
and, with --write, replaces the `## App` section of bench/RESULTS.md (other sections are left alone).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from bench.results import cpu_model, write_section  # noqa: E402

TARGETS = (2.55, 2.65, 2.7, 2.75, 2.85, 2.9, 2.95, 3.0)  # fresh searches (cache misses)


def timed(at: AppTest) -> float:
    t0 = time.perf_counter()
    at.run()
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    return time.perf_counter() - t0


def measure() -> dict[str, list[float]]:
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=120).run()
    out = {"new target loss (search runs)": [], "revisited target loss (cached)": [], "cost units toggle": []}
    for target in TARGETS:
        at.number_input(key="p_target").set_value(target)
        out["new target loss (search runs)"].append(timed(at))
    for target in TARGETS:
        at.number_input(key="p_target").set_value(target)
        out["revisited target loss (cached)"].append(timed(at))
    for units in ("usd", "flops") * 4:
        at.radio(key="p_units").set_value(units)
        out["cost units toggle"].append(timed(at))
    return out


def report(results: dict[str, list[float]]) -> str:
    lines = ["## App", "",
             f"Pareto page (default inputs) re-render after an input change, server side, via "
             f"`streamlit.testing.v1.AppTest`; `python bench/bench_app.py`. Machine: {os.cpu_count()} cores "
             f"(nproc), {cpu_model()}, Python {platform.python_version()}; 1-minute load average "
             f"{os.getloadavg()[0]:.1f} when measured (other work shares the cores). Target: ≤ 300 ms.", "",
             "| change | median ms | max ms | reruns |", "| --- | --- | --- | --- |"]
    for name, times in results.items():
        lines.append(f"| {name} | {1000 * statistics.median(times):.0f} | {1000 * max(times):.0f} | {len(times)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update the ## App section of bench/RESULTS.md")
    text = report(measure())
    print(text)
    if parser.parse_args().write:
        write_section("## App", text)
