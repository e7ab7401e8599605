"""The service under hostile requests (issue 37): links into a store from outside --data-root, paths
the file system refuses, zipped uploads that inflate. Each is a 4xx with a clear message that never
names the data root, and the read's memory stays bounded by the upload limit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from samcell_rt.synthetic import as_dtype, synthetic_cells
from tests.apps.test_service import post
from tests.formats_files import PIXEL_UM, write_ome_zarr
from tests.helpers import serving

pytest.importorskip("uvicorn", reason="the service needs the 'gui' extra")
pytest.importorskip("zarr")


@pytest.fixture(scope="module")
def storage(tmp_path_factory, blob_path):
    """A service over a data root holding a good store and one whose array is linked in from outside."""
    from samcell_rt import load_model
    from samcell_rt.apps.serve import create_service

    base = tmp_path_factory.mktemp("hostile")
    root = base / "data-root-secret-name"
    root.mkdir()
    image = as_dtype(synthetic_cells((96, 128), count=3, radius=9, seed=8)[0], "uint16")
    write_ome_zarr(root / "good.ome.zarr", image, "yx", [PIXEL_UM, PIXEL_UM])
    write_ome_zarr(base / "secret.ome.zarr", image, "yx", [PIXEL_UM, PIXEL_UM])
    shutil.copytree(root / "good.ome.zarr", root / "linked.ome.zarr")
    array = next(p.name for p in (root / "good.ome.zarr").iterdir() if p.is_dir())  # the writer's dataset path
    shutil.rmtree(root / "linked.ome.zarr" / array)
    (root / "linked.ome.zarr" / array).symlink_to(base / "secret.ome.zarr" / array)  # the array, from outside
    shutil.copytree(root / "good.ome.zarr", root / "chunk.ome.zarr")
    chunk = next(p for p in (root / "chunk.ome.zarr" / array).rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.unlink()
    chunk.symlink_to(base / "secret.ome.zarr" / chunk.relative_to(root / "chunk.ome.zarr"))  # one chunk only
    (root / "inside.ome.zarr").symlink_to(root / "good.ome.zarr")  # a link that stays inside is fine
    with serving(create_service(load_model(str(blob_path), batch_size=4), max_mb=1, data_root=root)) as url:
        yield url, root


def test_links_out_of_the_data_root_at_any_level_are_refused(storage):
    url, root = storage
    assert post(url, b"", "path=good.ome.zarr")[0] == 200
    assert post(url, b"", "path=inside.ome.zarr")[0] == 200
    for store in ("linked.ome.zarr", "chunk.ome.zarr"):
        status, body, _ = post(url, b"", f"path={store}")
        assert status == 403 and b"a link outside the service's data root" in body, (store, body)
        assert str(root).encode() not in body and b"data-root-secret-name" not in body


@pytest.mark.parametrize("query, message", [
    ("path=" + "a" * 300, b"too long"),
    ("path=good.ome.zarr/" + "b" * 300, b"too long"),
    ("path=%00etc", b"NUL byte"),
    ("path=x%00.ome.zarr", b"NUL byte"),
    ("path=" + "c/" * 3000, b"too long"),
], ids=["300-character name", "300-character member", "NUL first", "NUL inside", "6000 characters"])
def test_paths_the_file_system_refuses_are_400_without_the_root(storage, query, message):
    url, root = storage
    status, body, _ = post(url, b"", query)
    assert status == 400 and message in body, body
    assert b"data-root-secret-name" not in body and len(body) < 1000


def test_unreadable_paths_never_show_the_root(storage):
    url, root = storage
    (root / "junk.ome.zarr").mkdir(exist_ok=True)
    (root / "junk.ome.zarr" / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group",
                                                                  "attributes": {"ome": {"multiscales": ["x"]}}}))
    for path in ("junk.ome.zarr", "missing/deep.tif"):
        status, body, _ = post(url, b"", f"path={path}")
        assert status == 422 and path.encode() in body and b"data-root-secret-name" not in body, body


def bomb(tmp_path, side: int = 4096) -> bytes:
    """A zipped store of `side` x `side` uint8 zeros in one uncompressed chunk (written: its fill value
    is 255): a few KB that inflate to side² bytes."""
    import zarr

    store = tmp_path / "b.ome.zarr"
    group = zarr.open_group(str(store), mode="w", zarr_format=2)
    group.create_array("0", shape=(side, side), chunks=(side, side), dtype="u1", fill_value=255,
                       compressors=None)[...] = 0
    (store / ".zattrs").write_text(json.dumps({"multiscales": [{"version": "0.4", "axes": ["y", "x"],
                                                                "datasets": [{"path": "0"}]}]}))
    archive = tmp_path / "b.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        for file in store.rglob("*"):
            if file.is_file():
                handle.write(file, str(file.relative_to(tmp_path)))
    return archive.read_bytes()


def test_zipped_upload_cannot_inflate_past_the_upload_limit(storage, tmp_path):
    url, _ = storage
    data = bomb(tmp_path)
    assert len(data) < 1 << 20  # under the service's 1 MB upload limit
    status, body, _ = post(url, data, "name=b.ome.zarr.zip")
    assert status == 422 and b"b.ome.zarr.zip" in body and b"above the 1 MB limit on decoded data" in body, body
    assert b"upload.zip" not in body  # the temporary file's name is the client's


PEAK_SCRIPT = """
import sys
from samcell_rt.apps.serve import decode_image
from samcell_rt.apps.http import RequestError

def peak_kb():  # this process's own high-water mark (ru_maxrss would carry the parent's over the fork)
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])

data = open(sys.argv[1], "rb").read()
import zarr, numpy  # what the read imports, before the mark is taken
before = peak_kb()
try:
    decode_image(data, "b.zarr.zip", max_bytes=None if sys.argv[2] == "none" else int(sys.argv[2]))
    print(200, peak_kb() - before)
except RequestError as exc:
    print(exc.status, peak_kb() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak from /proc/self/status")
def test_service_read_of_a_bomb_stays_within_its_memory(tmp_path):
    """The service's upload read in a fresh process: its peak resident memory grows by far less than
    the 64 MB the upload would inflate to (the limit on decoded data is the 1 MB upload limit); the
    same read without that limit does inflate it, so the bound is a real difference."""
    archive = tmp_path / "bomb.bin"
    archive.write_bytes(bomb(tmp_path, 8192))

    def peak(limit: str) -> tuple[str, int]:
        proc = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(archive), limit], capture_output=True,
                              text=True, timeout=120)
        status, grown_kb = proc.stdout.split() or [proc.stderr, "0"]
        return status, int(grown_kb)

    status, grown_kb = peak(str(1 << 20))
    assert status == "422" and grown_kb < 16 * 1024, (status, grown_kb)  # under 16 MB against 64 MB inflated
    status, grown_kb = peak("none")
    assert status == "200" and grown_kb > 60 * 1024, (status, grown_kb)


def test_compressed_tiff_upload_cannot_inflate_past_the_upload_limit(storage):
    """The same bound for a TIFF: 2048 x 2048 uint16 zeros deflate to a few KB but decode to 8 MB."""
    import io

    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((2048, 2048), np.uint16), compression="zlib")
    assert len(buffer.getvalue()) < 1 << 20
    status, body, _ = post(storage[0], buffer.getvalue(), "name=flat.tif")
    assert status == 422 and b"flat.tif" in body and b"decodes 8.0 MB" in body, body


def test_uploaded_three_channel_store_needs_a_channel(storage, tmp_path):
    url, _ = storage
    data = np.stack([as_dtype(synthetic_cells((64, 64), count=2, radius=8, seed=s)[0], "uint16") for s in (1, 2, 3)])
    write_ome_zarr(tmp_path / "c.ome.zarr", data, "cyx", [1.0, PIXEL_UM, PIXEL_UM])
    archive = shutil.make_archive(str(tmp_path / "c.ome.zarr"), "zip", tmp_path, "c.ome.zarr")
    upload = open(archive, "rb").read()
    status, body, _ = post(url, upload, "name=c.ome.zarr.zip")
    assert status == 422 and b"3 channels" in body and b"channel=N" in body
    assert post(url, upload, "name=c.ome.zarr.zip&channel=1")[0] == 200


def test_only_stores_are_walked_for_links(storage, monkeypatch):
    """`path=.` names the root itself: a folder the reader refuses, so it is not walked (with a walk
    limit of 2 entries, walking it would answer 403 'too many entries'); a store still is."""
    from samcell_rt.apps import serve

    url, _ = storage
    monkeypatch.setattr(serve, "MAX_WALK", 2)
    status, body, _ = post(url, b"", "path=.")
    assert status == 422 and b"is a folder" in body and b"data-root-secret-name" not in body, body
    status, body, _ = post(url, b"", "path=good.ome.zarr")
    assert status == 403 and b"too many to check" in body, body
