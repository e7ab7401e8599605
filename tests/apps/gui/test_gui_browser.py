"""The GUI in a real headless Chromium: upload, wait, compare with the CLI, move a slider, screenshot."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import tifffile

from samcell_rt.synthetic import as_dtype, synthetic_cells
from tests.helpers import ARTIFACTS, serving

pytest.importorskip("starlette", reason="GUI tests need the 'gui' extra")
pytest.importorskip("uvicorn", reason="GUI tests need the 'gui' extra")
playwright = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (extra 'gui-test')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (apt-get install chromium)")


@pytest.fixture()
def gui_url(blob_path):
    from samcell_rt import load_model
    from samcell_rt.apps.gui.app import create_app

    with serving(create_app(load_model(str(blob_path)))) as url:
        yield url + "/"


def test_upload_two_images_compare_with_cli_and_move_slider(gui_url, blob_path, tmp_path):
    first, second = tmp_path / "plate16.tif", tmp_path / "well.png"
    tifffile.imwrite(first, as_dtype(synthetic_cells((480, 640), count=40, seed=21)[0], "uint16"))
    cv2.imwrite(str(second), as_dtype(synthetic_cells((300, 300), count=9, seed=22)[0], "uint8"))
    cli = subprocess.run([sys.executable, "-m", "samcell_rt.cli", "segment", str(first), str(second), "-m",
                          str(blob_path), "-o", str(tmp_path / "cli")], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    with open(tmp_path / "cli" / "summary.csv", newline="") as handle:
        expected = {Path(row["file"]).name: row for row in csv.DictReader(handle)}

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(gui_url)
        page.wait_for_selector("#engine:has-text('engine cpu (fp32)')")
        page.set_input_files("#files", [str(first), str(second)])
        page.wait_for_function("document.querySelectorAll('#jobs li.done').length === 2", timeout=60_000)
        page.wait_for_selector("#summary-plot:not([hidden])", timeout=30_000)  # cells and confluency per image
        for index, name in enumerate([first.name, second.name]):
            page.click(f"#jobs li:nth-child({index + 1})")
            page.wait_for_selector(f"#jobs li:nth-child({index + 1}).selected")
            page.wait_for_function(f"document.querySelector('#jobs li.selected').textContent.startsWith('{name}')")
            page.wait_for_function(f"document.querySelector('[data-metric=cells]')?.textContent === "
                                   f"'{expected[name]['cells']}'")
            area = float(page.text_content("[data-metric=mean_area_px]"))
            assert area == pytest.approx(float(expected[name]["mean_area_px"]), rel=1e-3)
            rows = page.locator("#cells tbody tr").count()
            assert rows == int(expected[name]["cells"])
        ARTIFACTS.mkdir(exist_ok=True)
        page.click("#jobs li:nth-child(1)")
        page.wait_for_function(f"document.querySelector('[data-metric=cells]')?.textContent === "
                               f"'{expected[first.name]['cells']}'")
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "gui.png"))
        before = page.text_content("[data-metric=cells]")
        page.eval_on_selector("#peak", "el => { el.value = 0.97; el.dispatchEvent(new Event('input')); }")
        page.wait_for_function(f"document.querySelector('[data-metric=cells]').textContent !== '{before}'",
                               timeout=10_000)
        assert int(page.text_content("[data-metric=cells]")) < int(before)
        page.screenshot(path=str(ARTIFACTS / "gui-after-slider.png"))
        browser.close()
