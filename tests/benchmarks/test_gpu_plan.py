"""The GPU check's plan: sizes from the real tree, calls that fit 64 MiB with 4 MiB spare, time limits.

Expected numbers are worked out by hand from the settings each test fixes (not from gpu_plan.json,
whose assumed times may be tuned after a first run)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from . import BENCHMARKS, load

gpu_plan = load("gpu_plan")
MIB = 1 << 20
ROOT = BENCHMARKS.parent


def settings(payload_mib: float = 150, ort_s: float = 120) -> dict:
    return {"device": {"travel_limit_mib": 64, "margin_mib": 4, "plan_limit_s": 720, "warm_after_call_s": 30,
                       "start_s": 120, "gap_s": 20, "transfer_mib_per_s": 10, "close_s": 15, "max_staging_calls": 4},
            "work_s": {"main": 300, "stage": 5, "ort": ort_s},
            "packages": {"onnxruntime-gpu": {"payload_bytes": int(payload_mib * MIB)}}}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)  # zeros: only the size matters, and git hashes them quickly


@pytest.fixture
def repo(tmp_path):
    """A git checkout with exactly `tracked` bytes tracked (files added by the test)."""
    git(tmp_path, "init", "-q")
    (tmp_path / ".git" / "info" / "exclude").write_text("/ignored/\n/shared/\n/.gpu/\n")
    return tmp_path


def commit(repo: Path, files: dict[str, int]) -> None:
    for name, size in files.items():
        write(repo / name, size)
    git(repo, "add", *files)
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tree")


def test_tree_counts_what_travels_and_nothing_else(repo):
    commit(repo, {"a.bin": 1000, "gone.bin": 50})
    (repo / "gone.bin").unlink()  # tracked, deleted here: does not travel
    write(repo / "new.bin", 500)  # untracked, not ignored: travels
    write(repo / "ignored" / "big.bin", 7000)  # ignored: stays
    write(repo / "shared" / "s.bin", 300)  # shared/ travels even though ignored
    assert gpu_plan.tree_size(repo) == (1800, 3)


def test_small_tree_plans_the_onnxruntime_route_in_parts_that_fit(repo):
    commit(repo, {"tree.bin": 20 * MIB})
    plan = gpu_plan.plan(repo, settings(payload_mib=150))
    # 64 - 4 - 20 = 40 MiB per call: 150 MiB -> 40, 40, 40, 30; main carries the first, ort the last
    assert [c.name for c in plan.calls] == ["main", "stage", "stage", "ort"]
    assert [c.carry_bytes / MIB for c in plan.calls] == [40, 40, 40, 30]
    assert [c.carry for c in plan.calls] == [[".gpu/parts/00"], [".gpu/parts/01"], [".gpu/parts/02"], [".gpu/parts/03"]]
    assert all(c.travel_bytes <= 60 * MIB for c in plan.calls)
    # main 120 + 60/10 + 300; two stage calls 20 + 6 + 5; ort 20 + 50/10 + 120; then 20 + 15 to give back
    assert [c.seconds for c in plan.calls] == [426, 31, 31, 145]
    assert plan.seconds == pytest.approx(668) and plan.fits and plan.ort.startswith("planned")


def test_large_tree_keeps_the_main_route_and_says_why_onnxruntime_is_out(repo):
    commit(repo, {"tree.bin": 48 * MIB})
    plan = gpu_plan.plan(repo, settings(payload_mib=150))
    assert [c.name for c in plan.calls] == ["main"] and plan.calls[0].carry == []
    assert "13 parts of 12.0 MiB, 11 staging-only calls (at most 4" in plan.ort
    assert plan.seconds == pytest.approx(120 + 4.8 + 300 + 35) and plan.fits


def test_onnxruntime_route_dropped_when_it_would_overrun_the_time_limit(repo):
    commit(repo, {"tree.bin": 20 * MIB})
    plan = gpu_plan.plan(repo, settings(payload_mib=150, ort_s=300))  # 668 - 120 + 300 = 848 s > 720
    assert [c.name for c in plan.calls] == ["main"]
    assert "14.1 min (limit 12 min)" in plan.ort and plan.fits


def test_tree_over_the_limit_is_refused(repo):
    commit(repo, {"tree.bin": 61 * MIB})
    plan = gpu_plan.plan(repo, settings())
    assert not plan.fits and "61.0 MiB, over the 60 MiB" in plan.problem
    assert gpu_plan.main(["--root", str(repo)]) == 2


def test_staged_parts_reassemble_and_are_refused_once_the_tree_grows(repo):
    commit(repo, {"tree.bin": 20 * MIB})
    payload = repo / ".gpu" / "payload.tar.xz"
    write(payload, 90 * MIB)
    manifest = gpu_plan.split(payload, repo, settings())
    parts = [repo / folder / f"payload.tar.xz.part{i:02d}" for i, folder in enumerate(manifest["folders"])]
    assert [p.stat().st_size / MIB for p in parts] == [40, 40, 10]
    assert hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest() == manifest["sha256"]
    plan = gpu_plan.plan(repo, settings())
    assert [c.carry_bytes / MIB for c in plan.calls] == [40, 40, 10] and "staged payload 90.0 MiB" in plan.ort
    write(repo / "grown.bin", 30 * MIB)  # untracked, not ignored: now only 10 MiB fit beside the tree
    plan = gpu_plan.plan(repo, settings())
    assert [c.name for c in plan.calls] == ["main"] and "run benchmarks/gpu_stage.sh again" in plan.ort


def test_dry_run_of_this_checkout_fits():
    """The acceptance check: on this checkout (a fresh clone in CI), no network, a second or two."""
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), "--dry-run"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    travels = [float(v) for v in re.findall(r"travels\s+([\d.]+) MiB", done.stdout)]
    assert travels and max(travels) <= 60
    assert float(re.search(r"= ([\d.]+) min", done.stdout).group(1)) <= 12
    plan = json.loads(subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), "--dry-run", "--json"],
                                     capture_output=True, text=True, timeout=60, check=True).stdout)
    assert plan["fits"] and plan["tree_bytes"] == gpu_plan.tree_size(ROOT)[0]
