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
    from samcell_rt.export.onnx import export_model

    checkpoint = tmp_path / "tiny"
    random_sam(tiny_config()).save_pretrained(checkpoint)
    onnx_path = tmp_path / "tiny.onnx"
    export_model(checkpoint, onnx_path)
    report = run_bench(str(onnx_path), ["cpu"], ["300x260"], [None, 2], repeats=1, peer_checkpoint=str(checkpoint))
    assert [(r["engine"], r["batch_size"], r["size"], r["tiles"]) for r in report["rows"]] == \
        [("cpu", 1, "300x260", 4), ("cpu", 2, "300x260", 4)]
    row = report["rows"][0]
    assert set(row["seconds"]) == {"read", "preprocess", "engine", "blend", "watershed", "measure", "total"}
    assert row["speedup_vs_peer"] == pytest.approx(row["peer_seconds"] / row["seconds"]["total"])
    assert 0 < row["outside_engine_share"] < 1 and row["peak_rss_mib"] > 0
    assert 0 <= row["pipelined_engine_idle_share"] < 1 and row["pipelined_images_per_second"] > 0
    table = markdown_table(report).split("\n\n")[0].splitlines()  # the rows' table, with the peer's columns
    assert "speed-up" in table[0] and len({line.count("|") for line in table}) == 1  # every row fills the header
    assert len(table) == 2 + len(report["rows"])


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


def test_configurations_run_interleaved_round_by_round(blob_path, tmp_path):
    from samcell_rt.benchmark import bench_images, bench_interleaved
    from samcell_rt.runtime.segmenter import Segmenter

    calls = []
    segmenters = {}
    for label in ("first", "second"):
        segmenter = Segmenter(blob_path, engine="cpu")
        segment = segmenter.segment
        segmenter.segment = lambda image, label=label, segment=segment: calls.append(label) or segment(image)
        segmenters[label] = segmenter
    rows, pairs = bench_interleaved(segmenters, bench_images(["256"], tmp_path), repeats=3)
    assert calls == ["first", "second"] * 4  # a warm-up round, then A B A B A B
    assert [r["label"] for r in rows] == ["first", "second"]
    (pair,) = pairs
    assert (pair["label"], pair["versus"], len(pair["speedups"]), len(pair["load_average_1min"])) == \
        ("second", "first", 3, 3)


def test_round_pairs_give_each_rounds_speed_up_against_the_first_and_the_peer():
    from samcell_rt.benchmark import PEER, round_pairs

    pairs = round_pairs("512", {"cpu b1": [2.0, 4.0, 3.0], "openvino b1": [1.0, 1.0, 2.0], PEER: [30.0, 20.0, 30.0]},
                        [1.5, 1.2, 0.9])
    found = {(p["label"], p["versus"]): (p["speedups"], p["median_speedup"]) for p in pairs}
    assert found == {("openvino b1", "cpu b1"): ([2.0, 4.0, 1.5], 2.0),
                     ("cpu b1", PEER): ([15.0, 5.0, 10.0], 10.0),
                     ("openvino b1", PEER): ([30.0, 20.0, 15.0], 20.0)}
    assert all(p["load_average_1min"] == [1.5, 1.2, 0.9] and p["size"] == "512" for p in pairs)


def test_the_table_shows_the_pairs_with_their_load(blob_path):
    report = run_bench(str(blob_path), ["cpu"], ["256"], [1, 2], repeats=2)
    table = markdown_table(report)
    assert "| 256 | cpu b2 | cpu b1 |" in table and "speed-up per round" in table
    assert report["interleaved"] and len(report["pairs"][0]["speedups"]) == 2
