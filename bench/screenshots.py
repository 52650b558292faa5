"""Screenshots of every page at laptop and desktop widths: `python bench/screenshots.py OUT_DIR [--width W ...]`.

Prints, per page and width, any element that reaches past the main column (what a reader would find cut off).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.browser import OVERFLOW_JS, PAGES, browser, go, open_app, serve_app  # noqa: E402


def shoot(out: Path, widths: list[int], pages: list[str], height: int = 6400, runs: Path | None = None) -> None:
    """Each page at each width; the window is tall enough to hold a whole page (Streamlit scrolls inside it)."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, serve_app(runs or Path(tmp) / "runs") as url:
        for width in widths:
            with browser(Path(tmp) / f"profile{width}", width=width, height=height) as ctx:
                page = ctx.new_page()
                open_app(page, url)
                for title in pages:
                    if title != "Pareto planner":
                        go(page, title)
                    page.wait_for_timeout(1500)  # charts draw after the rerun ends
                    path = out / f"{PAGES[title]}-{width}.png"
                    page.screenshot(path=path, full_page=True)
                    print(path, page.evaluate(OVERFLOW_JS)[:5])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, action="append", help="viewport width (px); default 1440 and 1024")
    parser.add_argument("--page", action="append", choices=list(PAGES), help="default: every page")
    parser.add_argument("--runs", type=Path, help="runs folder to show (default: an empty temporary one)")
    args = parser.parse_args()
    shoot(args.out, args.width or [1440, 1024], args.page or list(PAGES), runs=args.runs)
