"""`samcell-rt bench` on the blob model: rows, ratios and report files (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from samcell_rt.benchmark import markdown_table, parse_size, run_bench


def test_parse_size():
    assert parse_size("512") == (512, 512) and parse_size("704x520") == (520, 704)


def test_bench_rows_and_peer_ratios(blob_path, tmp_path):
    pytest.importorskip("torch", reason="the peer needs torch (export extra)")
    pytest.importorskip("samcell", reason="the peer is the PyPI samcell package (dev extra)")
    from samcell_rt.export.model import random_sam, tiny_config

    # the peer needs the torch weights the ONNX came from: a tiny model as a HF folder (config inside)
    from samcell_rt.export.onnx import export_onnx

    checkpoint = tmp_path / "tiny"
    random_sam(tiny_config()).save_pretrained(checkpoint)
    onnx_path = tmp_path / "tiny.onnx"
    export_onnx(checkpoint, onnx_path)
    report = run_bench(str(onnx_path), ["cpu"], ["300x260"], [None, 2], repeats=1, peer_checkpoint=str(checkpoint))
    assert [(r["engine"], r["batch_size"], r["size"], r["tiles"]) for r in report["rows"]] == \
        [("cpu", 1, "300x260", 4), ("cpu", 2, "300x260", 4)]
    row = report["rows"][0]
    assert set(row["seconds"]) == {"read", "preprocess", "engine", "blend", "watershed", "measure", "total"}
    assert row["speedup_vs_peer"] == pytest.approx(row["peer_seconds"] / row["seconds"]["total"])
    assert 0 < row["outside_engine_share"] < 1 and row["peak_rss_mib"] > 0
    assert 0 <= row["pipelined_engine_idle_share"] < 1 and row["pipelined_images_per_second"] > 0
    assert "speed-up" in markdown_table(report)


def test_bench_command_writes_json_table_and_plot(blob_path, tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "samcell_rt.cli", "bench", "-m", str(blob_path), "--sizes", "256",
                           "--repeats", "1", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["machine"]["cores"] >= 1 and report["rows"][0]["tiles"] == 2 * 2
    assert out.with_suffix(".md").read_text().startswith("| engine")
    assert out.with_suffix(".png").exists() or "matplotlib" in proc.stderr


def test_bench_rows_say_the_precision_and_the_machine_its_load_and_cpu_flags(blob_path):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (extra 'openvino')")
    report = run_bench(str(blob_path), ["cpu", "openvino@fp32"], ["256"], [None], repeats=1)
    assert [(r["engine"], r["precision"]) for r in report["rows"]] == [("cpu", "fp32"), ("openvino", "fp32")]
    machine = report["machine"]
    assert set(machine["load_average"]) == {"before", "after"} and len(machine["load_average"]["after"]) == 3
    flags = open("/proc/cpuinfo").read().split() if sys.platform == "linux" else []
    assert ("avx512_bf16" in machine["cpu_flags"]) == ("avx512_bf16" in flags)
    assert "| precision |" in markdown_table(report)


def test_only_openvino_takes_a_fixed_precision(blob_path):
    with pytest.raises(ValueError, match="only openvino"):
        run_bench(str(blob_path), ["cpu@bf16"], ["256"], [None], repeats=1)
