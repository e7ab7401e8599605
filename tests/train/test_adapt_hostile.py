"""`samcell-rt adapt` under hostile input: every input and output is checked before any work (one
`error:` line naming the file, nothing written to the cache), two runs never fight over one name or
file, the registry and the cached encoder survive damage, and killed writers' files are cleaned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

pytest.importorskip("torch", reason="adapt needs the 'train' extra")

from samcell_rt.errors import DataError, InputError  # noqa: E402
from samcell_rt.runtime.atomic import atomic_path, stale_parts  # noqa: E402
from samcell_rt.synthetic import synthetic_cells  # noqa: E402
from tests.train.conftest import write_pairs  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str):
    from click.testing import CliRunner

    from samcell_rt.cli import main

    return CliRunner().invoke(main, list(args))


def cache_files(home: Path) -> list[str]:
    """Files a run left in the cache besides lock files (which are empty and reused)."""
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


def refused(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.lower().startswith("error:")]  # click: "Error:"
    assert len(errors) == 1 and all(n in errors[0] for n in needles), result.output
    assert "Traceback" not in result.output


# -- inputs -------------------------------------------------------------------------------------
def test_labels_of_another_size_are_refused_before_any_work_naming_both_files(tmp_path, home):
    folder = write_pairs(tmp_path / "pairs", [1, 2])
    _, labels = synthetic_cells((250, 320), count=14, radius=14, seed=2)
    tifffile.imwrite(folder / "c2_labels.tif", labels.astype(np.uint16))
    start = time.monotonic()
    result = run_cli("adapt", str(folder), "--out", str(tmp_path / "m.onnx"), "--minutes", "30")
    refused(result, str(folder / "c2_labels.tif"), str(folder / "c2.tif"), "(250, 320)", "256x320")
    assert time.monotonic() - start < 60  # not after the 30-minute budget
    assert cache_files(home) == [] and not (tmp_path / "m.onnx").exists()


def test_ids_beyond_int32_are_renumbered_keeping_every_cell(tmp_path):
    from samcell_rt.train.annotations import read_labels

    _, labels = synthetic_cells((64, 80), count=6, radius=6, seed=3)
    big = np.where(labels > 0, labels.astype(np.uint64) + 3_000_000_000, 0).astype(np.uint32)
    tifffile.imwrite(tmp_path / "big.tif", big)
    read = read_labels(tmp_path / "big.tif")
    assert read.dtype == np.int32 and read.min() == 0
    # the same partition of the pixels: one new id per old id, background stays background
    pairs = {(int(a), int(b)) for a, b in zip(big.ravel(), read.ravel())}
    assert len(pairs) == len(np.unique(big)) == len({b for _, b in pairs})
    assert all((a == 0) == (b == 0) for a, b in pairs)
    # without any background the ids start at 1: no cell becomes background
    tifffile.imwrite(tmp_path / "full.tif", np.full((8, 8), 4_000_000_000, np.uint32))
    assert np.unique(read_labels(tmp_path / "full.tif")).tolist() == [1]


@pytest.mark.parametrize("values, message", [
    (np.array([[0, -3], [5, 5]], np.int16), "negative label id -3"),
    (np.array([[0, np.nan], [5, 5]], np.float32), "NaN or infinite"),
])
def test_label_values_that_no_cast_can_keep_are_refused_naming_the_file(tmp_path, values, message):
    from samcell_rt.train.annotations import read_labels

    tifffile.imwrite(tmp_path / "l.tif", values)
    with pytest.raises(DataError, match=message) as error:
        read_labels(tmp_path / "l.tif")
    assert str(tmp_path / "l.tif") in str(error.value)


def test_negative_ids_stop_adapt_with_one_error_line(tmp_path, home):
    folder = write_pairs(tmp_path / "pairs")
    _, labels = synthetic_cells((256, 320), count=14, radius=14, seed=1)
    tifffile.imwrite(folder / "c1_labels.tif", -labels.astype(np.int32))
    refused(run_cli("adapt", str(folder), "--out", str(tmp_path / "m.onnx")), str(folder / "c1_labels.tif"), "negative")
    assert cache_files(home) == []


@pytest.mark.parametrize("damage", ["not a tiff", "lying header"])
def test_a_damaged_label_file_is_named(tmp_path, home, damage):
    folder = write_pairs(tmp_path / "pairs")
    label_file = folder / "c1_labels.tif"
    if damage == "not a tiff":
        label_file.write_bytes(b"II*\0garbage")
    else:  # a header claiming 2^31 pixels in a file of a few hundred bytes
        tifffile.imwrite(label_file, np.zeros((8, 8), np.uint8))
        with tifffile.TiffFile(label_file, mode="r+b") as tif:
            tif.pages[0].tags["ImageWidth"].overwrite(1 << 16)
            tif.pages[0].tags["ImageLength"].overwrite(1 << 15)
    refused(run_cli("adapt", str(folder), "--out", str(tmp_path / "m.onnx")), str(label_file))


def test_a_single_file_as_data_is_a_clear_error(tmp_path, home):
    folder = write_pairs(tmp_path / "pairs")
    refused(run_cli("adapt", str(folder / "c1.tif"), "--out", str(tmp_path / "m.onnx")), str(folder / "c1.tif"),
            "not a folder")


@pytest.mark.parametrize("text, cause", [('{"images": [', "JSONDecodeError"), ("[1, 2]", "format"),
                                         ('{"images": [{"id": 1}], "annotations": []}', "height")])
def test_a_json_that_is_no_coco_annotation_is_named(tmp_path, home, text, cause):
    pytest.importorskip("pycocotools", reason="COCO annotations need pycocotools")
    (tmp_path / "a.json").write_text(text)
    refused(run_cli("adapt", str(tmp_path / "a.json"), "--out", str(tmp_path / "m.onnx")), str(tmp_path / "a.json"),
            "not a COCO annotation file", cause)


def test_a_cache_that_cannot_be_written_is_refused_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "home").write_text("a file where the cache folder should be")
    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path / "home"))
    refused(run_cli("adapt", str(write_pairs(tmp_path / "pairs")), "--out", str(tmp_path / "m.onnx")),
            "cannot write", str(tmp_path / "home"))


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "1e300"])
def test_minutes_must_be_a_finite_budget(tmp_path, home, value):
    folder = write_pairs(tmp_path / "pairs")
    refused(run_cli("adapt", str(folder), "--out", str(tmp_path / "m.onnx"), "--minutes", value), "--minutes")


def test_seed_must_be_a_seed(tmp_path, home):
    result = run_cli("adapt", str(write_pairs(tmp_path / "pairs")), "--out", str(tmp_path / "m.onnx"), "--seed", "-1")
    assert result.exit_code == 2 and "--seed" in result.output and "Traceback" not in result.output


# -- the output and the name -------------------------------------------------------------------
def test_an_unwritable_out_is_refused_before_reading_anything(tmp_path, home):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    # the data does not exist: the output is checked first, in a fraction of a second
    refused(run_cli("adapt", str(tmp_path / "none"), "--out", str(blocker / "m.onnx")), str(blocker))
    assert cache_files(home) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_folder_is_refused(tmp_path, home):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        refused(run_cli("adapt", str(write_pairs(tmp_path / "pairs")), "--out", str(folder / "m.onnx")), str(folder))
    finally:
        folder.chmod(0o755)


def test_out_in_the_cache_is_refused(tmp_path, home):
    refused(run_cli("adapt", str(write_pairs(tmp_path / "pairs")), "--out", str(home / "adapt" / "mine.onnx"),
                    "--overwrite"), "own cache")


@pytest.mark.parametrize("name, message", [
    ("x" * 240, "at most 100 characters"),
    ("../escape", "plain name"),
    ("a\\b", "plain name"),
    (" lead", "plain name"),
    ("nul\0byte", "plain name"),
    ("samcell-lite", "shipped or downloadable"),
])
def test_names_that_cannot_name_a_model_are_refused_before_any_work(tmp_path, home, name, message):
    refused(run_cli("adapt", str(write_pairs(tmp_path / "pairs")), "--out", str(tmp_path / "m.onnx"), "--name", name),
            message)
    assert cache_files(home) == []


def test_a_plain_name_in_any_script_is_accepted():
    from samcell_rt.registry import check_adapted_name

    for name in ("zellen-müller", "HeLa v2.1", "a+b_c"):
        check_adapted_name(name)


def test_out_owned_by_another_name_is_refused_even_with_overwrite(tmp_path, home):
    from samcell_rt.registry import adapted_models, register_adapted

    theirs = tmp_path / "theirs.onnx"
    theirs.write_bytes(b"their model")
    register_adapted("theirs", {"onnx": str(theirs)})
    result = run_cli("adapt", str(write_pairs(tmp_path / "pairs")), "--out", str(theirs), "--name", "mine", "--overwrite")
    refused(result, str(theirs), "'theirs'")
    assert theirs.read_bytes() == b"their model" and list(adapted_models()) == ["theirs"]
    with pytest.raises(InputError, match="the file of the adapted model 'theirs'"):  # the registry refuses it too
        register_adapted("mine", {"onnx": str(theirs)}, overwrite=True)


def test_a_second_run_for_a_claimed_name_or_file_fails_at_once(tmp_path, home):
    """The claim is an advisory lock the first run holds from its checks to its registration."""
    from samcell_rt.registry import adapting

    pairs = write_pairs(tmp_path / "pairs")
    with adapting("mine", tmp_path / "mine.onnx"):
        refused(run_cli("adapt", str(pairs), "--out", str(tmp_path / "other.onnx"), "--name", "mine"),
                "another adapt run is making the model 'mine'")
        refused(run_cli("adapt", str(pairs), "--out", str(tmp_path / "mine.onnx"), "--name", "else"),
                "another adapt run is writing", str(tmp_path / "mine.onnx"))
    assert not (home / "adapted.json").exists()


# -- the registry ------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["not json", "a list", "bad record", "not utf-8", "a folder"])
def test_a_damaged_registry_never_traces_back(tmp_path, home, damage):
    from samcell_rt.registry import register_adapted

    good = tmp_path / "good.onnx"
    good.write_bytes(b"")
    home.mkdir()
    registry = home / "adapted.json"
    if damage == "not json":
        registry.write_text('{"good": {"onnx": ')
    elif damage == "a list":
        registry.write_text("[1, 2]")
    elif damage == "bad record":
        registry.write_text(json.dumps({"good": {"onnx": str(good)}, "bad": {"onnx": 5}, "worse": "x",
                                        "nul": {"onnx": "a\0b"}}))
    elif damage == "not utf-8":
        registry.write_bytes(b"\xff\xfe\x00garbage")
    else:
        registry.mkdir()
    listing = run_cli("models", "list")
    assert listing.exit_code == 0 and "Traceback" not in listing.output, listing.output
    assert any(line.startswith("warning:") and str(registry) in line for line in listing.output.splitlines())
    assert "samcell-lite" in listing.output  # the other models are still listed
    assert ("good " in listing.output) == (damage == "bad record")
    info = run_cli("models", "info", "bad")
    refused(info, "unknown model name")
    refused(run_cli("segment", str(good), "--model", "bad", "--out", str(tmp_path / "o")), "bad")
    if damage != "a folder":  # registering keeps the damaged file (or the good records) instead of losing them
        register_adapted("new", {"onnx": str(tmp_path / "new.onnx")})
        kept = json.loads(registry.read_text())
        assert "new" in kept and (("good" in kept) if damage == "bad record" else (home / "adapted.json.damaged").exists())


def test_damaged_hash_records_are_ignored_with_a_warning_and_kept(home):
    from samcell_rt import registry
    from samcell_rt.errors import SamcellWarning

    home.mkdir()
    (home / "hashes.json").write_text(json.dumps({"a.pt": "0" * 64, "b.pt": None, "c.pt": "not-a-hash"}))
    with pytest.warns(SamcellWarning, match="'b.pt', 'c.pt'"):
        assert registry.recorded_hashes() == {"a.pt": "0" * 64}
    (home / "hashes.json").write_text("garbage")
    with pytest.warns(SamcellWarning, match="hashes.json"):
        registry.record_hash("d.pt", "1" * 64)
    assert json.loads((home / "hashes.json").read_text()) == {"d.pt": "1" * 64}
    assert (home / "hashes.json.damaged").read_text() == "garbage"


# -- temporary files ---------------------------------------------------------------------------
def test_stale_parts_are_those_no_live_writer_holds(tmp_path):
    dead = tmp_path / ".m.onnx.abc123.part"
    dead.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(dead, (old, old))
    young = tmp_path / ".m.onnx.def456.part"
    young.write_bytes(b"half")
    with atomic_path(tmp_path / "live.onnx") as live:
        live.write_bytes(b"being written")
        os.utime(live, (old, old))
        assert sorted(stale_parts(tmp_path)) == [dead, young]  # the live writer's file is locked
        assert stale_parts(tmp_path, min_age=300) == [dead]
        assert stale_parts(tmp_path, of="live.onnx") == []
    assert (tmp_path / "live.onnx").read_bytes() == b"being written"


def test_adapt_cleans_what_a_killed_run_left_and_nothing_else(tmp_path, home):
    weights = home / "adapt" / "weights"
    weights.mkdir(parents=True)
    old = time.time() - 3600
    left = [weights / ".mine-0123456789ab-89abcdef.safetensors.x1y2.part", tmp_path / ".m.onnx.k3j4.part"]
    kept = [tmp_path / ".other.onnx.k3j4.part", weights / ".fresh.safetensors.zz.part"]
    orphan = weights / "mine-0123456789ab-89abcdef.safetensors"  # saved, never registered: its run was killed
    foreign = weights / "mine-two-0123456789ab-89abcdef.safetensors"  # another name's
    for path in [*left, *kept, orphan, orphan.with_suffix(".json"), foreign]:
        path.write_bytes(b"x")
        if path not in kept:
            os.utime(path, (old, old))
    os.utime(kept[0], (old, old))  # old, but not a part of this run's --out
    result = run_cli("adapt", str(tmp_path / "missing"), "--out", str(tmp_path / "m.onnx"), "--name", "mine")
    refused(result, "does not exist")
    assert not any(p.exists() for p in [*left, orphan, orphan.with_suffix(".json")])
    assert all(p.exists() for p in [*kept, foreign])


# -- the cached encoder ------------------------------------------------------------------------
def test_a_truncated_cached_encoder_is_made_again(tmp_path, home):
    from samcell_rt.export.model import SamCellTiles, config_by_name, random_sam
    from samcell_rt.train.frozen import FrozenEncoder

    wrapper = SamCellTiles(random_sam(config_by_name("tiny-256"), 0), 256).eval()
    tiles = np.random.default_rng(0).integers(0, 255, (1, 1, 256, 256), dtype=np.uint8)
    expected = FrozenEncoder(wrapper, "f" * 64)(tiles)
    (path,) = (home / "adapt").glob("encoder-*.onnx")
    whole = path.read_bytes()
    for damage in (whole[: len(whole) // 2], whole[:-1] + bytes([whole[-1] ^ 1])):  # truncated; one bit flipped
        path.write_bytes(damage)
        np.testing.assert_allclose(FrozenEncoder(wrapper, "f" * 64)(tiles), expected, atol=1e-5)
        assert path.read_bytes() == whole or len(path.read_bytes()) == len(whole)
    path.with_name(path.name + ".json").write_text("[]")  # a damaged record: made again, not trusted
    FrozenEncoder(wrapper, "f" * 64)
    assert json.loads(path.with_name(path.name + ".json").read_text())["size"] == path.stat().st_size


# -- whole runs (tiny model, seconds of training) ----------------------------------------------
def quick(**kwargs):
    from samcell_rt.train.adapt import AdaptSettings

    return AdaptSettings(max_crops=8, min_steps=2, **kwargs)


def test_a_failed_export_leaves_no_weights_and_no_record(tmp_path, home, tiny, monkeypatch):
    import samcell_rt.export.onnx as onnx_export
    from samcell_rt.train.adapt import AdaptRequest, adapt

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx_export, "export_model", broken)
    with pytest.raises(OSError, match="No space"):
        adapt(AdaptRequest([str(write_pairs(tmp_path / "pairs", [1, 2]))], tmp_path / "m.onnx", str(tiny[1]),
                           minutes=0.2, init=str(tiny[0])), quick(), progress=False)
    assert list((home / "adapt" / "weights").iterdir()) == []
    assert not (home / "adapted.json").exists() and not (tmp_path / "m.onnx").exists()


def test_two_runs_for_one_name_and_file_leave_the_registry_describing_the_file(tmp_path, home, tiny):
    """The issue's case: the second run used to replace the first's model, then fail on the name."""
    checkpoint, parent = tiny
    pairs, out = write_pairs(tmp_path / "pairs", [1, 2]), tmp_path / "m.onnx"
    env = dict(os.environ, PYTHONPATH=str(REPO), SAMCELL_RT_HOME=str(home))
    command = [sys.executable, "-m", "samcell_rt.cli", "adapt", str(pairs), "--out", str(out), "--model", str(parent),
               "--init", str(checkpoint), "--minutes", "0.3"]
    first = subprocess.Popen(command, stderr=subprocess.PIPE, env=env)
    seen = b""
    while b"hold-out" not in seen:
        chunk = first.stderr.read1(256)
        assert chunk, seen[-500:]
        seen += chunk
    second = subprocess.run([*command, "--overwrite", "--seed", "1"], capture_output=True, text=True, env=env,
                            timeout=120)
    assert second.returncode == 2 and "another adapt run is making the model 'm'" in second.stderr, second.stderr
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    record = json.loads((home / "adapted.json").read_text())["m"]
    from samcell_rt.runtime.contract import read_props

    assert record["onnx"] == str(out.resolve()) and record["settings"]["seed"] == 0
    assert read_props(out)["samcell.training_data_sha256"] == record["data_sha256"]
    assert [p.name for p in (home / "adapt" / "weights").glob("*.safetensors")] == [Path(record["weights"]).name]
