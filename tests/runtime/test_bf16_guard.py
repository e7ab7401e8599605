"""The bf16 guard judged by the cells: its criterion on hand-made label pairs (expected SEG and DET worked
out by hand, cross-checked with samcell_rt.evaluate, which test_evaluate checks against py-ctcmetrics),
and its verdict cache (old-criterion entries, damaged files, a cache that cannot be written)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from samcell_rt.errors import SamcellWarning
from samcell_rt.evaluate import score_pair
from samcell_rt.runtime.engines import bf16_guard
from samcell_rt.runtime.engines.bf16_guard import Agreement, Verdict, agreement


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """A fresh user cache and no verdicts remembered from other tests."""
    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(bf16_guard, "_SEEN", {})


def squares(rows: int, cols: int, side: int = 10, gap: int = 4) -> np.ndarray:
    """rows x cols squares of side x side pixels, `gap` apart, labelled 1.. row by row."""
    pitch = side + gap
    labels = np.zeros((rows * pitch, cols * pitch), np.int32)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        labels[r * pitch : r * pitch + side, c * pitch : c * pitch + side] = i + 1
    return labels


def judged(reference: np.ndarray, labels: np.ndarray, map_change: float = 0.0) -> Agreement:
    """The guard's agreement of `labels` (bf16) with `reference` (fp32) on one image."""
    maps = np.zeros(reference.shape, np.float32)
    return agreement([(reference, maps)], [(labels, maps + map_change)])


def cross_check(found: Agreement, reference: np.ndarray, labels: np.ndarray) -> None:
    score = score_pair(reference, labels)
    assert (found.seg, found.det) == (pytest.approx(score.seg), pytest.approx(score.det))


def test_identical_labels_pass():
    cells = squares(2, 5)
    found = judged(cells, cells)
    assert (found.seg, found.det, found.cells_fp32, found.cells_bf16, found.failures()) == (1.0, 1.0, 10, 10, [])


def test_a_split_cell_fails_on_the_count():
    cells = squares(2, 5)
    split = cells.copy()
    split[0:10, 6:10] = 11  # cell 1 (columns 0-9) cut 60 / 40: the 60 px part still matches it
    found = judged(cells, split)
    # SEG: nine cells with IoU 1, cell 1 with 60/100; DET: one spurious prediction, 1 - 1 / (10 x 10)
    assert (found.seg, found.det) == (pytest.approx(9.6 / 10), pytest.approx(0.99))
    assert (found.cells_fp32, found.cells_bf16, found.count_change) == (10, 11, pytest.approx(0.1))
    assert found.failures() == ["cell count changes 10.0% > 3%"]
    cross_check(found, cells, split)


def test_a_lost_cell_fails_on_every_score():
    cells = squares(2, 5)
    found = judged(cells, np.where(cells == 7, 0, cells))
    # SEG 9 / 10; DET: one missed cell, 1 - 10 / (10 x 10)
    assert (found.seg, found.det, found.cells_bf16) == (pytest.approx(0.9), pytest.approx(0.9), 9)
    assert found.failures() == ["SEG 0.900 < 0.95", "DET 0.900 < 0.97", "cell count changes 10.0% > 3%"]
    cross_check(found, cells, np.where(cells == 7, 0, cells))


def test_a_shifted_border_between_touching_cells_passes():
    cells = np.zeros((10, 60), np.int32)
    for i in range(6):  # six 10 x 10 cells side by side, each touching the next
        cells[:, 10 * i : 10 * i + 10] = i + 1
    shifted = cells.copy()
    shifted[:, 10] = 1  # the border between cells 1 and 2 moves one column: 110 and 90 pixels
    found = judged(cells, shifted)
    assert found.seg == pytest.approx((4 + 100 / 110 + 90 / 100) / 6) and found.det == 1.0
    assert found.seg > 0.95 and found.failures() == []
    cross_check(found, cells, shifted)


@pytest.mark.parametrize("lost, fails", [(3, []), (4, ["DET 0.960 < 0.97", "cell count changes 4.0% > 3%"])])
def test_the_bounds_hold_at_their_edges(lost, fails):
    cells = squares(10, 10, side=6, gap=2)
    found = judged(cells, np.where(cells > 100 - lost, 0, cells))
    # 3 lost of 100: SEG 0.97, DET 1 - 30 / 1000 = 0.97, count 3%: all exactly on their bounds, passed
    assert (found.seg, found.det) == (pytest.approx(1 - lost / 100), pytest.approx(1 - lost / 100))
    assert found.failures() == fails


def test_the_map_bound_catches_a_broken_compile_with_the_same_cells():
    cells = squares(2, 5)
    assert judged(cells, cells, map_change=0.149).failures() == []
    assert judged(cells, cells, map_change=0.15).failures() == ["max map difference 0.15 >= 0.15"]


def test_scores_pool_over_the_guard_images_like_ctc_frames():
    cells = squares(2, 5)
    maps = np.zeros(cells.shape, np.float32)
    found = agreement([(cells, maps), (cells[:10, :14], maps[:10, :14])],
                      [(np.where(cells == 7, 0, cells), maps), (cells[:10, :14], maps[:10, :14])])
    assert (found.seg, found.det, found.cells_fp32, found.cells_bf16) == (pytest.approx(10 / 11),
                                                                          pytest.approx(1 - 10 / 110), 11, 10)


def test_real_images_and_cells_are_among_the_guard_images():
    images = bf16_guard.guard_images(256)
    assert images[0].shape == (727, 1026) and images[0].dtype == np.uint16  # the shipped phase-contrast frame
    assert [i.shape for i in images[1:]] == [(256, 256)] * 2 and all(i.max() > 150 for i in images[1:])


GOOD = Agreement(0.99, 1.0, 120, 121, 0.04)
BAD = Agreement(0.62, 0.71, 120, 80, 0.3)


class Measure:
    """A stand-in for segmenting the guard images: returns `found`, counting its calls."""

    def __init__(self, found: Agreement) -> None:
        self.found, self.calls = found, 0

    def __call__(self) -> Agreement:
        self.calls += 1
        return self.found


def said(found: Agreement, key: str = "KEY") -> tuple[Verdict, list[str]]:
    """The verdict for `key` and the lines it said."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = bf16_guard.verdict(key, "test-model 1", Measure(found))
    return got, [str(w.message) for w in caught if issubclass(w.category, SamcellWarning)]


def test_a_verdict_keeps_every_number_and_is_measured_once_per_model_and_cpu():
    measure = Measure(GOOD)
    with pytest.warns(SamcellWarning, match=r"test-model 1 on this CPU: passes \(.*SEG 0\.990, DET 1\.000, cells "
                                            r"120 -> 121, .* measured now, once for this model and CPU, in \d"):
        found = bf16_guard.verdict("KEY", "test-model 1", measure)
    assert found.passed and found.seconds >= 0
    record = json.loads(bf16_guard.verdicts_path().read_text())["KEY"]
    assert record == {"seg": 0.99, "det": 1.0, "cells_fp32": 120, "cells_bf16": 121, "max_map_difference": 0.04,
                      "passed": True, "seconds": found.seconds, "criterion": "labels-v1"}
    bf16_guard._SEEN.clear()  # as a new process: read from the user cache, silently
    assert said(GOOD) == (found, [])


def test_a_failed_verdict_says_its_numbers_in_one_line_once_per_process():
    found, lines = said(BAD)
    assert not found.passed and len(lines) == 1 and "\n" not in lines[0]
    assert "SEG 0.620 < 0.95; DET 0.710 < 0.97; cell count changes 33.3% > 3%; max map difference 0.3 >= 0.15" in \
        lines[0] and lines[0].endswith(": running fp32")
    assert said(GOOD) == (found, [])  # remembered: neither measured nor said again
    bf16_guard._SEEN.clear()
    again, lines = said(GOOD)  # a new process reads the failure and says it once, with its numbers
    assert again == found and len(lines) == 1 and "measured earlier" in lines[0]


def write_records(text: str) -> None:
    bf16_guard.verdicts_path().parent.mkdir(parents=True, exist_ok=True)
    bf16_guard.verdicts_path().write_text(text)


OLD_PASS = {"passed": True, "max_abs_error": 0.015, "tolerance": 0.02}
NUMBERS = {"seg": 0.99, "det": 1.0, "cells_fp32": 120, "cells_bf16": 121, "max_map_difference": 0.04, "seconds": 3.0}


@pytest.mark.parametrize("records", [
    {"KEY": OLD_PASS},  # the first criterion (max abs map difference)
    {"KEY": {"passed": False, "max_abs_error": None, "tolerance": 0.02}},  # issue 37: a null error
    {"KEY": {**NUMBERS, "passed": True, "criterion": "labels-v0"}},  # another criterion
    {"KEY": {**NUMBERS, "passed": "yes", "criterion": "labels-v1"}},
    {"KEY": {**NUMBERS, "seg": None, "passed": True, "criterion": "labels-v1"}},
    {"KEY": {**NUMBERS, "seg": float("nan"), "passed": True, "criterion": "labels-v1"}},
    {"KEY": {**NUMBERS, "seg": 0.5, "passed": True, "criterion": "labels-v1"}},  # contradicts its numbers
    {"KEY": {**NUMBERS, "passed": True}},  # wrong shape: a field missing
    {"KEY": [1, 2]},
    ["a list"],
])
def test_old_or_damaged_records_are_measured_again(records):
    write_records(json.dumps(records))
    measure = Measure(BAD)
    with pytest.warns(SamcellWarning, match="measured now"):
        assert not bf16_guard.verdict("KEY", "test-model 1", measure).passed
    assert measure.calls == 1
    assert json.loads(bf16_guard.verdicts_path().read_text())["KEY"]["criterion"] == "labels-v1"


def test_a_verdict_file_that_is_not_json_is_measured_again_and_rewritten():
    write_records('{"KEY": {"passed": tr')
    found, lines = said(GOOD)
    assert found.passed and len(lines) == 1
    assert set(json.loads(bf16_guard.verdicts_path().read_text())) == {"KEY"}


def test_a_folder_where_the_verdict_file_belongs_costs_a_measurement_per_process():
    bf16_guard.verdicts_path().mkdir(parents=True)
    found, _ = said(BAD)
    assert not found.passed and bf16_guard.verdicts_path().is_dir()
    assert said(GOOD)[0] == found  # held in memory for this process


def test_a_read_only_cache_keeps_the_verdict_in_memory(monkeypatch):
    write_records(json.dumps({"OTHER": {**NUMBERS, "passed": True, "criterion": "labels-v1"}}))
    before = bf16_guard.verdicts_path().read_text()

    def refuse(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(bf16_guard, "write_text_atomic", refuse)  # as on a read-only folder (tests may run as root)
    found, lines = said(BAD)
    assert not found.passed and len(lines) == 1
    assert bf16_guard.verdicts_path().read_text() == before
    assert said(GOOD)[0] == found


def test_a_read_only_cache_folder(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; the monkeypatched test covers this case")
    write_records("{}")
    bf16_guard.verdicts_path().parent.chmod(0o500)
    try:
        found, lines = said(BAD)
    finally:
        bf16_guard.verdicts_path().parent.chmod(0o700)
    assert not found.passed and len(lines) == 1 and bf16_guard.verdicts_path().read_text() == "{}"
