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


# No script running: neither the status widget nor the header's Stop button (shown while a cached function runs).
IDLE = ("!document.querySelector('[data-testid=\"stStatusWidget\"]') && "
        "![...document.querySelectorAll('header button')].some(b => b.innerText.trim() === 'Stop')")


def settle(page, timeout=0, quiet_ms=600):
    """Wait until the app has finished its rerun: the status widget (shown while a script runs, after a short
    delay) stays absent for `quiet_ms`."""
    idle = IDLE
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


# The Vega views of the page's charts, in page order (Streamlit keeps each in a React hook's ref; Vega exposes no
# other handle), as window.__views; returns how many were found. Lets a test read what a canvas chart drew.
VIEWS_JS = """() => {
  const isView = o => o && typeof o === 'object' && typeof o.scenegraph === 'function'
    && typeof o.signal === 'function';
  window.__views = [];
  for (const chart of document.querySelectorAll('[data-testid="stVegaLiteChart"]')) {
    let found = null;
    for (const node of [chart, ...chart.querySelectorAll('*')]) {
      const key = Object.keys(node).find(k => k.startsWith('__reactFiber'));
      for (let f = key && node[key], i = 0; f && !found && i < 40; f = f.return, i++) {
        for (let h = f.memoizedState, j = 0; h && typeof h === 'object' && !found && j < 200; h = h.next, j++) {
          const v = h.memoizedState;
          found = isView(v) ? v : isView(v && v.current) ? v.current : null;
        }
      }
      if (found) break;
    }
    if (found) window.__views.push(found);
  }
  return window.__views.length;
}"""

# Per chart (after VIEWS_JS): marks cut by the plot's edge (a symbol partly inside, partly outside the plotting
# area), and texts (titles, axis titles, tick and legend labels) that run past what is shown of the drawing (the
# drawing, inside the chart's element) or are shortened by a length limit.
CLIPPED_JS = """() => window.__views.map(view => {
  const canvas = view.container().querySelector('canvas, svg').getBoundingClientRect();
  const element = view.container().closest('[data-testid="stVegaLiteChart"]').getBoundingClientRect();
  const shown = {left: Math.max(canvas.left, element.left), right: Math.min(canvas.right, element.right),
                 top: Math.max(canvas.top, element.top), bottom: Math.min(canvas.bottom, element.bottom)};
  const [ox, oy] = view.origin();
  const ctx = document.createElement('canvas').getContext('2d');
  const out = {cut: [], texts: []};
  const walk = (node, x, y, inPlot) => {
    for (const item of node.items || []) {
      if (node.marktype === 'group') {  // the frame a clipped mark is cut by: its nearest sized group
        const frame = item.width > 0 && item.height > 0 ? item : inPlot;
        for (const child of item.items || []) walk(child, x + (item.x || 0), y + (item.y || 0), frame);
        continue;
      }
      const b = item.bounds;
      if (!b || b.x1 > b.x2) continue;
      if (node.marktype === 'symbol' && node.clip && inPlot) {
        const inside = b.x1 >= -0.5 && b.y1 >= -0.5 && b.x2 <= inPlot.width + 0.5 && b.y2 <= inPlot.height + 0.5;
        const outside = b.x2 < 0 || b.y2 < 0 || b.x1 > inPlot.width || b.y1 > inPlot.height;
        if (!inside && !outside) out.cut.push(JSON.stringify(item.datum).slice(0, 80));
      }
      if (node.marktype === 'text' && item.text != null && item.text !== '') {
        const text = Array.isArray(item.text) ? item.text.join(' ') : String(item.text);
        const font = item.font || 'sans-serif';
        ctx.font = `${item.fontStyle || ''} ${item.fontWeight || ''} ${item.fontSize || 11}px ${font}`;
        const shortened = item.limit > 0 && ctx.measureText(text).width > item.limit + 1;
        const left = canvas.left + ox + x + b.x1, right = canvas.left + ox + x + b.x2;
        const top = canvas.top + oy + y + b.y1, bottom = canvas.top + oy + y + b.y2;
        const frame = node.role === 'title-text' ? canvas : shown;  // the chart's title sits above its element
        const cut = left < frame.left - 3 || right > frame.right + 3 || top < frame.top - 3
          || bottom > frame.bottom + 3;
        if (shortened || cut) out.texts.push(text);  // 3 px: bounds carry ~1 px of padding
      }
    }
  };
  walk(view.scenegraph().root, 0, 0, null);
  return out;
})"""

# Buttons (download buttons included) whose label the page shortens with an ellipsis.
CUT_BUTTONS_JS = """() => {
  const out = [];
  for (const button of document.querySelectorAll('[data-testid="stMain"] button')) {
    for (const el of [button, ...button.querySelectorAll('*')]) {
      if (getComputedStyle(el).textOverflow === 'ellipsis' && el.scrollWidth > el.clientWidth + 1) {
        out.push(button.innerText.trim());
        break;
      }
    }
  }
  // a multiselect's chips: cut by the box that clips them (a chip wider than its row is cut, not wrapped)
  for (const tag of document.querySelectorAll('[data-testid="stMain"] [data-testid="stMultiSelectTagsContainer"] [data-tag]')) {
    let box = tag.parentElement;
    while (box && getComputedStyle(box).overflowX === 'visible') box = box.parentElement;
    const r = tag.getBoundingClientRect(), b = box ? box.getBoundingClientRect() : null;
    const inner = [...tag.querySelectorAll('*')].some(
      el => getComputedStyle(el).textOverflow === 'ellipsis' && el.scrollWidth > el.clientWidth + 1);
    if (inner || (b && (r.right > b.right + 1 || r.left < b.left - 1))) out.push(tag.innerText.trim());
  }
  return out;
}"""


def clipped(page) -> dict:
    """{'charts': per chart {'cut': marks cut by the plot's edge, 'texts': texts cut}, 'buttons': cut labels of
    buttons and multiselect chips}."""
    page.evaluate(VIEWS_JS)
    return {"charts": page.evaluate(CLIPPED_JS), "buttons": page.evaluate(CUT_BUTTONS_JS)}
