"""`samcell-rt report`: one offline page from an output folder; user mistakes end with exit 2."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from samcell_rt.runs.folders import segment_files
from samcell_rt.runs.report import write_report
from tests.runs.growth import growth_stack, well_folder

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
    assert all((out / link).is_file() for link in re.findall(r'href="([^"]*)"', page))  # full-size overlays


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
