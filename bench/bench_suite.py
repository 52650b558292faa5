"""The test suite as CI runs it (`make test`), timed on this machine: alone, then with busy loops beside it.

    python bench/bench_suite.py [--hogs 0 2] [--write]

Each condition runs the README's test command once (`make test`: `pytest -q -n 2 tests`) and records its wall time,
the CPU time of the whole process tree, pytest's last line, and the share of the cores idle just before. The busy
loops (`while True: pass`, one process each) are what the suite must survive on a shared machine; a condition with
busy loops measures that it passes, not how fast.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_startup import busy_loops  # noqa: E402
from bench.results import cpu_model, idle_share, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Test suite"
TARGET_S = 600  # `make test` on a quiet 2-core machine


def run_suite(hogs: int) -> dict:
    idle = idle_share()
    loops = busy_loops(hogs)
    before, t0 = os.times(), time.perf_counter()
    try:
        proc = subprocess.run(["make", "test"], cwd=ROOT, capture_output=True, text=True)
    finally:
        for loop in loops:
            loop.kill()
    wall, after = time.perf_counter() - t0, os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    tail = [ln for ln in proc.stdout.splitlines() if ln.strip()][-1:] or ["(no output)"]
    return {"hogs": hogs, "wall": wall, "cpu": cpu, "rc": proc.returncode, "last": tail[0].strip("= "),
            "idle": idle}


def section(rows: list[dict]) -> str:
    lines = [HEADING, "", f"`make test` (`pytest -q -n 2 tests`), timed by `python bench/bench_suite.py` on "
             f"{os.cpu_count()} cores (nproc), {cpu_model()}, {time.strftime('%Y-%m-%d')}. Busy loops: processes "
             "spinning `while True: pass` beside the suite, one core each. Target: at most "
             f"{TARGET_S // 60} minutes on a quiet machine; passing with two busy loops.", "",
             "| busy loops | cores idle before (3 s) | wall | CPU s (all processes) | exit | pytest's last line |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['hogs']} | {r['idle']:.0%} | {r['wall'] / 60:.1f} min ({r['wall']:.0f} s) | {r['cpu']:.0f} | "
              f"{r['rc']} | {r['last']} |" for r in rows]
    quiet = [r for r in rows if r["hogs"] == 0]
    if quiet:
        q = quiet[0]
        state = "quiet" if q["idle"] >= 0.9 else f"NOT quiet ({q['idle']:.0%} idle: an upper bound)"
        lines += ["", f"Alone ({state}): {q['wall'] / 60:.1f} min, target {TARGET_S // 60} min "
                  f"{'met' if q['wall'] <= TARGET_S and q['rc'] == 0 else 'NOT met'}."]
    for r in rows:
        if r["hogs"]:
            lines += [f"With {r['hogs']} busy loops: {'passed' if r['rc'] == 0 else 'FAILED'} "
                      f"({r['wall'] / 60:.1f} min)."]
    lines += ["", "No test judges by the clock: waits end on an event (a process ending, a metrics line, a FIFO "
              "opened, a reaper thread joined, a page element shown), and the fuzz limits a case by steps.", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hogs", type=int, nargs="*", default=[0, 2], help="busy loops per condition")
    ap.add_argument("--write", action="store_true", help=f"replace the '{HEADING}' section of bench/RESULTS.md")
    args = ap.parse_args(argv)
    rows = [run_suite(h) for h in args.hogs]
    text = section(rows)
    print(text)
    if args.write:
        write_section(HEADING, text)
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
