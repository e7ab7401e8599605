"""`samcell-rt web`: the pinned onnxruntime-web files (integrity checked, cache self-healing), the
assembled folder, the isolation headers of the local server, and the command itself. No network:
a made-up package stands in for the registry's tarball."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from samcell_rt.apps.web import npm as rf
from samcell_rt.apps.web import site
from samcell_rt.apps.web.server import ISOLATION_HEADERS, make_server
from samcell_rt.cli import main
from samcell_rt.errors import DownloadError, ModelError


def tarball(path: Path, files: dict[str, bytes]) -> str:
    """Write an npm-style tarball (everything under package/); return its npm integrity string."""
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path / "cache"))
    files = {"dist/ort.wasm.min.mjs": b"export const x = 1;\n", "dist/a.wasm": b"\0asm", "package.json": b"{}",
             "dist/unused.js": b"not kept"}
    integrity = tarball(tmp_path / "pkg.tgz", files)
    package = rf.NpmPackage("fake-ort", "1.0.0", integrity, ("dist/ort.wasm.min.mjs", "dist/a.wasm", "package.json"))
    return package, tmp_path / "pkg.tgz"


def test_pinned_runtime_is_a_registry_version_with_sha512():
    assert rf.ORT_WEB.tarball_url == "https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-1.31.1.tgz"
    algorithm, _, digest = rf.ORT_WEB.integrity.partition("-")
    assert algorithm == "sha512" and len(base64.b64decode(digest)) == 64


def test_runtime_files_unpacked_once_and_rebuilt_when_damaged(fake_package, monkeypatch):
    package, tgz = fake_package
    folder = rf.runtime_files(package, tgz)
    assert sorted(p.name for p in folder.iterdir()) == ["a.wasm", "files.json", "ort.wasm.min.mjs", "package.json"]
    assert (folder / "ort.wasm.min.mjs").read_bytes() == b"export const x = 1;\n"
    monkeypatch.setattr(rf, "_download", lambda *a: pytest.fail("an intact cache must not be fetched again"))
    assert rf.runtime_files(package) == folder
    (folder / "a.wasm").write_bytes(b"damaged")

    def registry(package, dest):
        dest.write_bytes(tgz.read_bytes())
        return dest

    monkeypatch.setattr(rf, "_download", registry)
    assert (rf.runtime_files(package) / "a.wasm").read_bytes() == b"\0asm"


def test_tampered_or_incomplete_tarball_is_refused(fake_package, tmp_path):
    package, tgz = fake_package
    tampered = tmp_path / "tampered.tgz"
    tarball(tampered, {"dist/ort.wasm.min.mjs": b"fetch('https://elsewhere.example/')", "dist/a.wasm": b"\0asm",
                       "package.json": b"{}"})
    with pytest.raises(DownloadError, match="not the pinned integrity"):
        rf.runtime_files(package, tampered)
    assert not package.folder.exists()
    short = rf.NpmPackage(package.name, package.version, package.integrity, (*package.files, "dist/missing.mjs"))
    with pytest.raises(DownloadError, match="lacks package/dist/missing.mjs"):
        rf.runtime_files(short, tgz)
    assert not package.folder.exists() and not list(package.folder.parent.glob(".*"))


@pytest.fixture
def fake_runtime(fake_package, monkeypatch):
    package, tgz = fake_package
    folder = rf.runtime_files(package, tgz)
    monkeypatch.setattr(site, "runtime_files", lambda package, tarball=None: folder)
    return folder


def test_site_holds_page_model_and_runtime(fake_runtime, blob_path, tmp_path):
    out = tmp_path / "site"
    record = site.build_site(out, blob_path)
    for name in ("index.html", "app.js", "samcell.js", "worker.js", "pipeline.js", "tiff.js", "onnx.js", "style.css"):
        assert (out / name).read_bytes() == (site.STATIC / name).read_bytes()
    assert (out / "model.onnx").read_bytes() == Path(blob_path).read_bytes()
    assert (out / "ort" / "ort.wasm.min.mjs").read_bytes() == (fake_runtime / "ort.wasm.min.mjs").read_bytes()
    written = json.loads((out / "site.json").read_text())
    assert written["model"] == "model.onnx" and written["model_name"] == record["model_name"] == "blob-test"
    assert written["model_sha256"] == hashlib.sha256(Path(blob_path).read_bytes()).hexdigest()
    assert site.build_site(out, blob_path)["model_sha256"] == written["model_sha256"]  # a rebuild in place works


def test_site_refuses_what_the_page_cannot_run(fake_runtime, tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01not protobuf")
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        site.build_site(tmp_path / "a", garbage)
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"serialized engine")
    with pytest.raises(ModelError, match="ONNX models only"):
        site.build_site(tmp_path / "b", engine)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_server_sends_isolation_headers_and_module_types(tmp_path):
    import threading

    (tmp_path / "a.mjs").write_text("export {};")
    (tmp_path / "b.wasm").write_bytes(b"\0asm")
    server = make_server(tmp_path, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        for name, kind in (("a.mjs", "text/javascript"), ("b.wasm", "application/wasm")):
            with urllib.request.urlopen(base + name, timeout=10) as response:
                assert response.headers["Content-Type"] == kind
                for header, value in ISOLATION_HEADERS.items():
                    assert response.headers[header] == value
    finally:
        server.shutdown()


def test_web_command_writes_the_site(fake_runtime, blob_path, tmp_path):
    result = CliRunner().invoke(main, ["web", str(tmp_path / "site"), "--model", str(blob_path)])
    assert result.exit_code == 0, result.output
    assert "model blob-test" in result.output and (tmp_path / "site" / "index.html").is_file()
    result = CliRunner().invoke(main, ["web", str(tmp_path / "other"), "--model", str(tmp_path / "none.onnx")])
    assert result.exit_code == 2 and result.output.startswith("error:")
