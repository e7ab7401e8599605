"""The GPU check's record: every step saved as it ends, so a call cut short still returns its results."""

from __future__ import annotations

import json

import pytest

from . import load

gpu_check = load("gpu_check")


def saved(record) -> dict:
    return json.loads(record.path.read_text())["steps"]


def test_steps_are_saved_as_they_end_errors_included(tmp_path):
    record = gpu_check.Record(tmp_path / "gpu_check_main.json", budget_s=60)
    assert record.step("one", 1, lambda: {"tiles_per_second": 5.0}) == {"tiles_per_second": 5.0}
    assert saved(record)["one"]["result"] == {"tiles_per_second": 5.0}  # on disk before the next step starts

    def broken():
        raise RuntimeError("capture failed")

    assert record.step("two", 1, broken) is None
    assert saved(record)["two"]["error"] == "RuntimeError: capture failed" and "one" in saved(record)


def test_long_steps_save_rows_as_they_come(tmp_path):
    record = gpu_check.Record(tmp_path / "r.json", budget_s=60)

    def sweep():
        record.partial("sweep", [{"batch": 32}])
        assert saved(record)["sweep"] == {"partial": [{"batch": 32}]}  # a kill here would still leave the row
        return {"rows": [{"batch": 32}, {"batch": 8}]}

    record.step("sweep", 1, sweep)
    assert saved(record)["sweep"]["result"]["rows"][1] == {"batch": 8}


def test_a_step_that_would_overrun_the_budget_is_skipped_not_started(tmp_path):
    record = gpu_check.Record(tmp_path / "r.json", budget_s=20)
    called = []
    assert record.step("vitb", 60, called.append, 1) is None
    assert not called and saved(record)["vitb"]["skipped"].startswith("needs ~60 s")


def test_summary_keeps_objects_out_of_the_json(tmp_path):
    record = gpu_check.Record(tmp_path / "r.json", budget_s=20)
    model = object()
    assert record.step("build", 1, lambda: model, summary=lambda m: {"parameters": 3}) is model
    assert saved(record)["build"]["result"] == {"parameters": 3}


@pytest.mark.parametrize("rows, expected", [
    ([{"precision": "bf16", "graphs": True, "batch": 32, "error": "x"},
      {"precision": "fp16", "graphs": False, "batch": 32, "tiles_per_second": 900.0},
      {"precision": "bf16", "graphs": False, "batch": 32, "tiles_per_second": 800.0},
      {"precision": "fp32", "graphs": True, "batch": 8, "tiles_per_second": 5000.0}], ("fp16", False)),
    ([{"precision": "bf16", "graphs": True, "batch": 32, "skipped": "budget"}], ("bf16", False)),
])
def test_end_to_end_takes_the_fastest_batch_32_setting_that_ran(rows, expected):
    assert gpu_check.fastest({"rows": rows}) == expected
    assert gpu_check.fastest(None) == ("bf16", False)
