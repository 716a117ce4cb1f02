"""End to end in headless Chromium: type a melody, pick a dynamics shape, set a tempo, generate, see and hear the result.

Uses Debian's ``chromium`` through Playwright's Python package (no browser download). Skipped only
when that browser is not installed; CI installs it (see install.sh). Set
``CADENZA_DOCS_SCREENSHOT=1`` to also refresh ``docs/studio.png`` from this run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from studio_helpers import wav_bytes

from cadenza.app.config import StudioConfig
from cadenza.app.server import BackgroundServer
from cadenza.app.studio import Studio

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "studio.png"
FOR_DOCS = bool(os.environ.get("CADENZA_DOCS_SCREENSHOT"))  # a longer clip makes a more telling picture

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"chromium is not installed ({CHROMIUM}); apt-get install chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed (pip install playwright)")


@pytest.fixture(scope="module")
def server(debug_gen, tmp_path_factory):
    studio = Studio(StudioConfig(root=tmp_path_factory.mktemp("studio_browser")), generators=[debug_gen])
    with BackgroundServer(studio) as srv:
        yield srv
    studio.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    pg.requested, pg.problems = [], []
    pg.on("request", lambda r: pg.requested.append(r.url))
    pg.on("console", lambda m: pg.problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.problems.append(str(e)))
    pg.goto(server.url)
    pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
    yield pg
    ctx.close()


def _settings(page, duration: str = "1", steps: str = "2") -> None:
    page.fill("#duration", duration)
    page.fill("#steps", steps)


def _wait_result(page, timeout: int = 60_000) -> None:
    page.wait_for_function(
        "() => { const i = document.querySelector('#result-plot'); const a = document.querySelector('#result-audio');"
        " return !document.querySelector('#result').hidden && i.complete && i.naturalWidth > 0 && a.duration > 0; }",
        timeout=timeout,
    )


def test_type_melody_pick_shape_set_bpm_generate(page, server, tmp_path):
    page.fill("#prompt", "bright folk fiddle tune")
    page.select_option("#melody-mode", "notes")
    page.fill("#melody-notes", "D4:1 F#4:1 A4:2")
    page.select_option("#dynamics-mode", "shape")
    page.select_option("#dynamics-shape", "crescendo")
    page.select_option("#rhythm-mode", "bpm")
    page.fill("#bpm", "110")
    page.fill("#seed", "3")
    duration = 4.0 if FOR_DOCS else 1.0
    _settings(page, duration=f"{duration:g}", steps="4" if FOR_DOCS else "2")
    page.click("#generate")
    _wait_result(page)

    src = page.get_attribute("#result-audio", "src")
    assert src and src.startswith("/api/history/") and src.endswith("/audio")
    assert abs(page.evaluate("document.querySelector('#result-audio').duration") - duration) < 0.05
    assert page.evaluate("document.querySelector('#result-plot').naturalWidth") > 300
    assert "controls (CSV zip)" in page.inner_text("#downloads")
    page.wait_for_selector("#history-rows tr")
    assert page.locator("#history-rows tr").count() == 1
    assert "melody:notes dynamics:shape rhythm:bpm" in page.inner_text("#history-rows")
    (row,) = server.studio.history.list()
    assert row.request["melody"]["notes"] == "D4:1 F#4:1 A4:2" and row.request["bpm"] == 110 and row.seed == 3
    assert row.request["dynamics"]["shape"] == "crescendo"

    shot = tmp_path / "studio.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if FOR_DOCS:
        _save_docs_screenshot(shot)
    assert all(u.startswith(server.url) for u in page.requested), [u for u in page.requested if not u.startswith(server.url)]
    assert not page.problems, page.problems


def test_drawn_curve_upload_replay_and_rerun(page, server, tmp_path):
    page.select_option("#dynamics-mode", "drawn")
    box = page.locator("#dyn-canvas").bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + box["height"] * 0.8)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(box["x"] + box["width"] * k / 10 - 2, box["y"] + box["height"] * (0.8 - 0.06 * k), steps=2)
    page.mouse.up()
    page.select_option("#rhythm-mode", "audio")
    clicks = tmp_path / "clicks.wav"
    clicks.write_bytes(wav_bytes(1.0))
    page.set_input_files("#rhythm-file", str(clicks))
    page.fill("#rhythm-start", "0.2")
    _settings(page)
    page.click("#generate")
    _wait_result(page)
    newest = server.studio.history.list()[0]
    assert newest.request["dynamics"]["mode"] == "drawn" and len(newest.request["dynamics"]["points"]) >= 5
    levels = [db for _, db in newest.request["dynamics"]["points"]]
    assert levels[-1] > levels[0] + 10  # drawn rising
    assert newest.request["rhythm"]["upload_name"] == "clicks.wav" and newest.request["rhythm"]["start"] == 0.2

    page.wait_for_selector(f"#history-rows tr[data-id='{newest.id}']")  # the list refreshes after each result
    n_rows = page.locator("#history-rows tr").count()
    page.locator(f"#history-rows tr[data-id='{newest.id}'] button.rerun").click()
    page.wait_for_function(f"() => document.querySelectorAll('#history-rows tr').length === {n_rows + 1}", timeout=60_000)
    rerun = server.studio.history.list()[0]
    assert rerun.rerun_of == newest.id
    assert rerun.path("audio").read_bytes() == newest.path("audio").read_bytes()
    first_id = server.studio.history.list()[-1].id
    page.locator(f"#history-rows tr[data-id='{first_id}'] button.replay").click()
    page.wait_for_function(f"() => document.querySelector('#result-audio').src.includes('{first_id}')")
    assert not page.problems, page.problems


def test_bad_note_is_shown_and_page_keeps_working(page):
    page.select_option("#melody-mode", "notes")
    page.fill("#melody-notes", "C4:1 H2:1")
    _settings(page)
    page.click("#generate")
    page.wait_for_selector("#status.error", timeout=20_000)
    assert "unknown note 'H2'" in page.inner_text("#status")
    page.fill("#melody-notes", "C4:1 B3:1")
    page.click("#generate")
    page.wait_for_selector("#status.ok", timeout=60_000)


def _save_docs_screenshot(shot: Path) -> None:
    """Copy to docs/studio.png as a palette PNG (small enough for the README: < 300 KB)."""
    from PIL import Image

    img = Image.open(shot).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    DOCS_SHOT.parent.mkdir(parents=True, exist_ok=True)
    tmp = DOCS_SHOT.with_suffix(".tmp.png")
    img.save(tmp, optimize=True)
    os.replace(tmp, DOCS_SHOT)
    assert DOCS_SHOT.stat().st_size < 300_000
