"""SAMCell in a web page: `samcell-rt web DIR` writes a static site that segments in the browser.

The page runs the runtime's own pipeline, rewritten in JavaScript (static/pipeline.js), on
onnxruntime-web in a Web Worker; images never leave the computer. Python here only assembles the
folder (site.py), brings the pinned onnxruntime-web files into the user cache (npm.py)
and serves the folder with the headers wasm threads need (server.py).
"""

from .npm import ORT_WEB, runtime_files
from .server import serve_site
from .site import build_site

__all__ = ["ORT_WEB", "build_site", "runtime_files", "serve_site"]
