"""Real-browser test: Debian's chromium driven by Playwright against `streamlit run app/main.py`.

Starts the app on a free loopback port, changes an input on the default page, downloads the plan from the Export
page and parses it, and saves a screenshot of every page to $SPARSEPLAN_SCREENSHOTS (default: a folder in the
system temp dir, outside the repository; the path is printed).
Skipped where /usr/bin/chromium is missing, except under CI (CI=true), where that is a failure.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from planner.plan import plan_from_text

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("SPARSEPLAN_SCREENSHOTS") or Path(tempfile.gettempdir()) / "sparseplan-screenshots")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

if not Path(CHROMIUM).exists():
    reason = f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run the browser test"
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_url(tmp_path):
    port = free_port()
    env = {**os.environ, "SPARSEPLAN_RUNS_DIR": str(tmp_path / "runs")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.headless", "true", "--server.port",
         str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("streamlit did not become healthy") from None
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server's own session: this test started it
        proc.wait(timeout=30)


def settle(page, timeout=120_000):
    """Wait until the app has finished its rerun (the status widget shows while a script runs)."""
    page.wait_for_timeout(300)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)


def test_browser_flow(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS, accept_downloads=True,
            viewport={"width": 1500, "height": 1100})
        try:
            page = ctx.new_page()
            page.goto(app_url)
            page.get_by_role("heading", name="Pareto planner").wait_for(timeout=120_000)
            page.locator("[data-testid='stVegaLiteChart']").first.wait_for(timeout=120_000)
            settle(page)
            target = page.get_by_role("spinbutton", name="Target loss (nats/token)")
            target.fill("2.80")
            target.press("Enter")
            settle(page)
            # the selected plan now reaches 2.8 (the canvas grid keeps its cells in a hidden accessibility layer)
            page.get_by_text("2.800").first.wait_for(state="attached", timeout=60_000)
            page.screenshot(path=ARTIFACTS / "pareto.png", full_page=True)

            shots = {"Scaling laws": "laws.png", "Schedule designer": "schedule.png", "Runs": "runs.png",
                     "Export": "export.png"}
            for title, name in shots.items():
                page.get_by_role("link", name=title).click()
                page.get_by_role("heading", name=title).wait_for(timeout=60_000)
                settle(page, timeout=180_000)
                page.screenshot(path=ARTIFACTS / name, full_page=True)

            with page.expect_download(timeout=60_000) as download:
                page.get_by_text("Download plan (YAML)").click()
            text = Path(download.value.path()).read_text()
        finally:
            ctx.close()
    plan = plan_from_text(text, "downloaded plan")
    assert abs(plan.prediction.loss - 2.8) < 1e-3  # the input changed on the Pareto page reached the export
    print(f"screenshots in {ARTIFACTS}")
