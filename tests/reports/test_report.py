"""`samcell-rt report`: one offline page from an output folder; user mistakes end with exit 2."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from samcell_rt.reports.report import write_report
from samcell_rt.runs.folders import segment_files
from tests.reports.growth import growth_stack, well_folder

pytest.importorskip("matplotlib", reason="report plots need the 'report' extra")


def report_run(tmp_path, segmenter):
    """A run with a time-lapse stack, a small plate and one broken file."""
    folder = tmp_path / "in"
    well_folder(folder, rows="AB", cols=3)
    growth_stack(folder / "growth.tif", frames=7)
    (folder / "broken.tif").write_bytes(b"not a tiff")
    out = tmp_path / "out"
    segment_files(sorted(folder.iterdir()), out, segmenter)
    return out


def test_report_page_is_self_contained(tmp_path, segmenter):
    out = report_run(tmp_path, segmenter)
    page = write_report(out).read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/") for s in sources)
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "<script" not in page
    for part in ("Timelines", "doubling time", "Plate (6 wells)", "broken.tif", "samcell-rt report", "blob"):
        assert part in page
    assert 'href="plate1_A01_overlay.png"' in page and 'href="growth_f0000_overlay.png"' in page
    assert all((out / link).is_file() for link in re.findall(r'<a href="([^"]*)"', page))  # full-size overlays


def cli(*args):
    return subprocess.run([sys.executable, "-m", "samcell_rt.cli", *args], capture_output=True, text=True, timeout=120)


def test_report_command_and_its_errors(tmp_path, segmenter):
    out = report_run(tmp_path, segmenter)
    done = cli("report", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "report.html").exists() and "wrote" in done.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = cli("report", str(empty))
    assert missing.returncode == 2 and "no summary.csv" in missing.stderr and "Traceback" not in missing.stderr
    bad = cli("report", str(out), "--well-pattern", "(")
    assert bad.returncode == 2 and "--well-pattern" in bad.stderr and "Traceback" not in bad.stderr


def test_bad_time_pattern_on_segment_is_exit_2_before_any_work(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    bad = cli("segment", str(image), "-o", str(tmp_path / "out"), "--time-pattern", "t(")
    assert bad.returncode == 2 and "--time-pattern" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "out").exists()


def test_summary_warning_column_and_missing_run_json_are_shown(tmp_path):
    (tmp_path / "summary.csv").write_text("file,frame,cells,confluency,status,error,warning\n"
                                          "a.tif,0,3,0.1,ok,,out of focus\nb.tif,0,0,,failed,cannot read,\n")
    page = write_report(tmp_path).read_text()
    assert "out of focus" in page and "cannot read" in page and "Problems (2)" in page
    assert "No run.json" in page


def test_report_reads_like_a_lab_report(tmp_path, segmenter):
    """Units on every axis, whole-number ticks on count axes, confluency in %, settings and column
    headers in words, thumbnails of at least 320 px linking to the full overlays: all checked in the HTML."""
    import base64
    import html

    import cv2
    import numpy as np

    out = report_run(tmp_path, segmenter)
    page = write_report(out).read_text()
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) >= 5  # timeline, two plate maps, distributions, per-image bars: inline, text kept as text
    for svg in svgs:
        texts = [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]
        labels = [t for t in texts if re.search(r"[a-z]", t) and not re.fullmatch(r"[A-P]|plate\d.*|growth.*", t)]
        assert any(re.search(r"\((count|%|px²|h|min|s|frame \(index\)|index|major / minor axis|4πA/P², 1 = circle)\)", t)
                   for t in labels), labels
    # count axes: every tick under a "(count)" axis is a whole number
    counts = re.findall(r"n = \d+ cells", page)
    assert counts
    ticks = re.findall(r'<g id="ytick_\d+">.*?<text[^>]*>([^<]*)</text>', svgs[-2], flags=re.S)  # distributions
    assert ticks and all(re.fullmatch(r"−?\d+", t) for t in ticks), ticks
    assert "confluency (%)" in page and "mean area (px²)" in page and "processing time (s)" in page
    assert "mean_area_px" not in page.split("<h2>Summary</h2>")[1]
    assert "['" not in page and "parameter " not in page and "peak threshold" in page
    summary = page.split("<h2>Summary</h2>")[1]
    header = re.findall(r"<th>([^<]*)</th>", summary)
    column = header.index("confluency (%)")
    rows = [re.findall(r"<td>([^<]*)</td>", row) for row in re.findall(r"<tr><td>.*?</tr>", summary)]
    shown = [float(row[column]) for row in rows if row[column]]
    assert shown and max(shown) > 1 and all(re.fullmatch(r"\d+\.\d", row[column]) for row in rows if row[column])
    thumbs = re.findall(r'<a href="([^"]+)"[^>]*><img alt="[^"]*" src="data:image/jpeg;base64,([^"]+)"', page)
    assert thumbs
    for link, data in thumbs:
        image = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        full = cv2.imread(str(out / link))
        assert max(image.shape[:2]) >= min(320, max(full.shape[:2]))


def test_report_works_without_the_report_extra(tmp_path, segmenter):
    """Right after the README's first command (no matplotlib) the report used to fail: now every table and
    thumbnail is there, and the page says how to add the plots."""
    out = report_run(tmp_path, segmenter)
    hide = "import sys; sys.modules['matplotlib'] = None; from samcell_rt.cli import main; main(['report', sys.argv[1]])"
    run = subprocess.run([sys.executable, "-c", hide, str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    page = (out / "report.html").read_text()
    assert "report` extra" in page and "<svg" not in page
    assert "doubling time" in page and "Plate (6 wells)" in page and 'href="growth_f0000_overlay.png"' in page
