"""Assertion helpers shared by tests."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

# screenshots and other files tests leave for a person to look at: in the repository root, ignored
# by git (.gitignore), so running the tests never changes a tracked file
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def same_up_to_renumbering(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two label images partition the pixels identically (background fixed at 0)."""
    if a.shape != b.shape or not np.array_equal(a == 0, b == 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def in_threads(work, count: int, timeout: float = 120) -> list:
    """`work(i)` for i in range(count), each on its own thread, all started together; the results in order."""
    import threading

    got: dict[int, object] = {}
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        barrier.wait()
        got[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    [t.start() for t in threads]
    [t.join(timeout=timeout) for t in threads]
    return [got.get(i) for i in range(count)]


@contextlib.contextmanager
def serving(app):
    """Run an ASGI app with uvicorn on a free 127.0.0.1 port in a thread; yield its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
