"""A local static server for the built site, with the headers that let the page use wasm threads.

Threads in onnxruntime-web need SharedArrayBuffer, which browsers give only to cross-origin
isolated pages: served with COOP same-origin and COEP require-corp. Any static web server that
sends these two headers can host the folder the same way.
"""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".js": "text/javascript", ".wasm": "application/wasm", ".onnx": "application/octet-stream"}

    def end_headers(self) -> None:
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-cache")  # revalidate: a rebuilt folder is seen at once
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass


def make_server(folder: Path, host: str = "127.0.0.1", port: int = 8767) -> ThreadingHTTPServer:
    """A server for `folder` (not yet serving); port 0 picks a free one (server.server_address)."""
    return ThreadingHTTPServer((host, port), functools.partial(_Handler, directory=str(folder)))


def serve_site(folder: Path, host: str = "127.0.0.1", port: int = 8767) -> None:
    """Serve `folder` until interrupted."""
    with make_server(folder, host, port) as server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
