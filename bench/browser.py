"""The app in a real browser: `streamlit run app/main.py` on a free loopback port, driven by Debian's chromium
through Playwright (never `playwright install`). Shared by the browser tests, the browser benchmark and the
screenshot script.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = {"Pareto planner": "pareto", "Scaling laws": "laws", "Schedule designer": "schedule", "Export": "export",
         "Runs": "runs"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(runs_dir: Path):
    """The app's URL while a streamlit server (its own process group, stopped on exit) serves it. No wait here has a
    clock limit (a busy machine is only slower; tests must not fail for it): the health poll ends when the server
    answers or exits, Playwright's waits (timeout 0) when the page shows what they wait for."""
    port = free_port()
    env = {**os.environ, "SPARSEPLAN_RUNS_DIR": str(runs_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.headless", "true", "--server.port",
         str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:  # not listening yet (or a slow answer): ask again unless the server has gone
                if proc.poll() is not None:
                    raise RuntimeError(f"streamlit exited ({proc.returncode}) before it served the app") from None
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server's own session: started here
        proc.wait()


@contextlib.contextmanager
def browser(profile: Path, width: int = 1440, height: int = 900):
    """A Playwright browser context on Debian's chromium at a viewport size."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=ARGS, accept_downloads=True,
            viewport={"width": width, "height": height})
        try:
            yield ctx
        finally:
            ctx.close()


def settle(page, timeout=0, quiet_ms=600):
    """Wait until the app has finished its rerun: the status widget (shown while a script runs, after a short
    delay) stays absent for `quiet_ms`."""
    idle = "!document.querySelector('[data-testid=\"stStatusWidget\"]')"
    page.wait_for_timeout(300)
    while True:
        page.wait_for_function(idle, timeout=timeout)
        page.wait_for_timeout(quiet_ms)
        if page.evaluate(idle):
            return


def open_app(page, url: str, timeout=0):
    """The default page, loaded, with its first chart drawn."""
    page.goto(url)
    page.get_by_role("heading", name="Pareto planner").wait_for(timeout=timeout)
    page.locator("[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg").first.wait_for(
        timeout=timeout)
    settle(page, timeout)


def go(page, title: str, timeout=0):
    """Navigate with the sidebar link and wait for the page's heading and the end of its rerun."""
    page.get_by_role("link", name=title).click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=timeout)
    settle(page, timeout)


# Elements that reach past the main column's right edge (or the window's), so a reader finds them cut off or has
# to scroll a table sideways. Code blocks (which scroll by design) and collapsed expanders are not counted.
OVERFLOW_JS = """() => {
  const main = document.querySelector('[data-testid="stMainBlockContainer"]');
  const right = Math.min(main.getBoundingClientRect().right, window.innerWidth) + 1;
  const out = [];
  for (const el of main.querySelectorAll('[data-testid="stElementContainer"] *')) {
    if (el.closest('svg') && el.tagName !== 'svg') continue;  // chart marks are clipped by their svg
    if (el.matches('input[type=range]')) continue;  // a slider's accessibility input: the thumb is what is drawn
    if (el.closest('[data-testid="stCode"], details:not([open])')) continue;
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > right && getComputedStyle(el).visibility !== 'hidden') {
      out.push((el.getAttribute('data-testid') || el.tagName) + ' ' + Math.round(r.right) + ' > ' + Math.round(right));
    }
  }
  return out;
}"""
