"""bench/RESULTS.md: each benchmark owns one `## ` section and replaces only that one."""
from __future__ import annotations

import re
import time
from pathlib import Path

from planner.hardware.costs import cpu_model  # noqa: F401  (the benchmarks' machine line)

RESULTS = Path(__file__).with_name("RESULTS.md")


def write_section(heading: str, text: str, path: Path = RESULTS) -> None:
    """Replace the section under `heading` (up to the next `## `) with `text`, or append it."""
    body = text if text.startswith(heading) else f"{heading}\n\n{text}"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: body.rstrip("\n") + "\n\n", old) if pattern.search(old) \
        else old.rstrip("\n") + "\n\n" + body.rstrip("\n") + "\n"
    path.write_text(new)


def idle_share(seconds: float = 3.0) -> float:
    """Share of all cores' time spent idle over `seconds` (/proc/stat): what the machine has free right now; the load
    average lags a minute behind a job that just stopped."""
    def sample():
        fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total
    (idle0, total0), _, (idle1, total1) = sample(), time.sleep(seconds), sample()
    return (idle1 - idle0) / max(total1 - total0, 1e-9)
