"""Model names, the registry, and verified resumable downloads against a local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import pytest

from samcell_rt import registry, shipped
from samcell_rt.cache import cache_dir
from samcell_rt.errors import DownloadError, ModelError
from samcell_rt.registry import download


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with HTTP Range support (Python's own handler has none); counts requests."""

    requests: list[str] = []

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        RangeHandler.requests.append(self.headers.get("Range") or "")
        path = self.translate_path(self.path)
        try:
            data = open(path, "rb").read()
        except OSError:
            self.send_error(404)
            return
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        if start >= len(data) and start:
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture()
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(RangeHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    RangeHandler.requests = []
    yield root, f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def test_download_resumes_a_partial_file_and_checks_sha256(server, tmp_path):
    root, url = server
    payload = bytes(range(256)) * 4000
    (root / "w.bin").write_bytes(payload)
    dest = tmp_path / "cache" / "w.bin"
    dest.parent.mkdir()
    (dest.parent / "w.bin.part").write_bytes(payload[:300_000])  # an interrupted earlier run
    digest = download(f"{url}/w.bin", dest, hashlib.sha256(payload).hexdigest())
    assert dest.read_bytes() == payload and digest == hashlib.sha256(payload).hexdigest()
    assert RangeHandler.requests == ["bytes=300000-"]


def test_download_rejects_a_wrong_checksum(server, tmp_path):
    root, url = server
    (root / "w.bin").write_bytes(b"tampered")
    with pytest.raises(DownloadError, match="does not match"):
        download(f"{url}/w.bin", tmp_path / "w.bin", "0" * 64)
    assert not (tmp_path / "w.bin").exists() and not (tmp_path / "w.bin.part").exists()
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{url}/missing.bin", tmp_path / "m.bin", None)


def test_pull_downloads_records_hash_and_exports(server, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch", reason="pull exports to ONNX: needs the 'export' extra")
    from samcell_rt.export.model import random_sam, tiny_config
    from samcell_rt.registry import pull_model

    root, url = server
    torch.save(random_sam(tiny_config()).state_dict(), root / "tiny.pt")
    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path / "home"))
    entry = registry.ModelEntry("tiny-remote", "tiny.pt", f"{url}/tiny.pt", None, "test", "tiny test model")
    monkeypatch.setitem(registry.KNOWN, "tiny-remote", entry)
    import samcell_rt.export.onnx as export_onnx_module

    real_export = export_onnx_module.export_model
    monkeypatch.setattr(export_onnx_module, "export_model",
                        lambda ckpt, out, props, **kw: real_export(ckpt, out, props, **kw | {"config": tiny_config()}))
    path = pull_model("tiny-remote")
    assert path == registry.exported_path("tiny-remote") and path.exists()
    assert registry.recorded_hashes()["tiny.pt"] == hashlib.sha256((root / "tiny.pt").read_bytes()).hexdigest()
    assert registry.resolve_model("tiny-remote") == path
    # a later pull of a changed file is refused: the first verified hash is kept
    (cache_dir() / "tiny.pt").unlink()
    (root / "tiny.pt").write_bytes(b"someone replaced the release asset")
    with pytest.raises(DownloadError, match="does not match"):
        pull_model("tiny-remote")


def test_resolve_model_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path))
    with pytest.raises(ModelError, match="models pull samcell-generalist"):
        registry.resolve_model("samcell-generalist")
    with pytest.raises(ModelError, match="not a known model name"):
        registry.resolve_model("no-such-model")
    assert registry.model_info("samcell-cyto")["url"].endswith("/samcell-cyto.pt")
    names = [row.name for row in registry.model_rows()]
    assert "samcell-generalist" in names and "samcell-cyto" in names


def test_default_model_is_shipped_and_listed(tmp_path, monkeypatch):
    """The wheel carries samcell-lite's weights, graph and card; no --model means samcell-lite, whose
    complete ONNX file is made in the user cache on first use, and the int8 file from it."""
    from samcell_rt.runtime.contract import read_props

    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path))
    assert {p.name for p in shipped.SHIPPED_DIR.iterdir()} >= {
        "samcell-lite.safetensors", "samcell-lite.graph.onnx", "samcell-lite.json", "samcell-lite.md"}
    assert [p.name for p in shipped.SHIPPED_DIR.glob("*.onnx")] == ["samcell-lite.graph.onnx"]  # no weights twice
    path = registry.resolve_model(None)
    assert path.is_relative_to(tmp_path) and path.exists() and registry.resolve_model("samcell-lite") == path
    props = read_props(path)
    assert (props["samcell.model_name"], props["samcell.version"]) == ("samcell-lite", "4")
    assert props["samcell.weights_sha256"] == shipped.SHIPPED["samcell-lite"].weights_sha256
    rows = {row.name: row for row in registry.model_rows()}
    assert [n for n, row in rows.items() if row.default] == ["samcell-lite"]
    assert rows["samcell-lite-int8"].kind == "shipped" and rows["samcell-lite"].path == path
    info = registry.model_info("samcell-lite")
    assert info["default"] and info["model_card"].endswith("samcell-lite.md")
    assert info["weights"].endswith("samcell-lite.safetensors")


def test_missing_default_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path)
    with pytest.raises(ModelError, match="default model is missing"):
        registry.resolve_model(None)
