"""Shared fixtures: a tiny contract-following model and access to the reference SAMCell package.

Parity with the reference package is the project's correctness anchor, so a run in which the
parity tests were skipped fails (set SAMCELL_RT_ALLOW_PARITY_SKIP=1 to run without them on
purpose). Only a missing package skips them: any other error while importing it is a failure.
"""

from __future__ import annotations

import os

import pytest

from samcell_rt.synthetic import blob_model

PARITY_SKIP = "reference package samcell 1.2.0 is not installed"
_parity_skips: list[str] = []


@pytest.fixture(scope="session")
def blob_path(tmp_path_factory):
    """The blob test model (blur + sigmoid), written once per session."""
    return blob_model(tmp_path_factory.mktemp("models") / "blob.onnx")


@pytest.fixture(scope="session")
def segmenter(blob_path):
    from samcell_rt import load_model

    return load_model(str(blob_path), engine="cpu", batch_size=4)


@pytest.fixture(scope="session")
def reference():
    """The PyPI `samcell` 1.2.0 package (parity target); skipped where it is not installed."""
    try:
        import samcell.pipeline as pipeline
        import samcell.slidingWindow as sliding
    except ImportError as exc:
        pytest.skip(f"{PARITY_SKIP} ({exc})")
    return pipeline, sliding


def pytest_runtest_logreport(report):
    if report.skipped and PARITY_SKIP in str(report.longrepr):
        _parity_skips.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _parity_skips and not os.environ.get("SAMCELL_RT_ALLOW_PARITY_SKIP") and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _parity_skips and not os.environ.get("SAMCELL_RT_ALLOW_PARITY_SKIP"):
        terminalreporter.write_line(f"FAILED: {len(_parity_skips)} parity test(s) skipped ({PARITY_SKIP}); install "
                                    "the 'dev' extra or set SAMCELL_RT_ALLOW_PARITY_SKIP=1", red=True)

