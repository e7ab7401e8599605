"""The report page in a real headless Chromium, offline: no console errors, every image loads."""

from __future__ import annotations

import shutil

import pytest

from samcell_rt.reports.report import write_report
from tests.reports.test_report import report_run

pytest.importorskip("matplotlib", reason="report plots need the 'report' extra")
playwright = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (extra 'gui-test')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (apt-get install chromium)")


def test_report_opens_offline_with_every_image(tmp_path, segmenter):
    page_path = write_report(report_run(tmp_path, segmenter))
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        context = browser.new_context(offline=True, viewport={"width": 1300, "height": 1000})
        page = context.new_page()
        errors, requests = [], []
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(page_path.as_uri())
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete && e.naturalWidth > 0])")
        assert len(images) >= 7 and all(ok for _, ok in images), images  # overlay thumbnails
        plots = page.eval_on_selector_all("figure.plot svg", "els => els.filter(e => e.getBBox().width > 0).length")
        assert plots >= 5  # inline SVG: timeline, two plate maps, distributions, per image
        assert not errors
        assert all(url.startswith(("file:", "data:")) for url in requests)
        browser.close()
