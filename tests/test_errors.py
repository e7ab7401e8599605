"""Whose fault an error is follows from its class, and exit_code is the one mapping to exit statuses."""

from __future__ import annotations

import pytest

from samcell_rt import errors
from samcell_rt.errors import exit_code


@pytest.mark.parametrize(("error", "code"), [
    (None, 0),
    (errors.ImageReadError("a.tif", "truncated"), 1),
    (errors.ImageValueError("NaN values"), 1),
    (errors.InputError("no inputs"), 2),
    (errors.DataError("no annotated images"), 2),
    (errors.ModelError("m.onnx", "broken"), 2),
    (errors.OutputError("read-only"), 2),
    (errors.EngineUnavailableError("no GPU"), 2),
    (RuntimeError("a bug"), 2),
])
def test_exit_codes(error, code):
    assert exit_code(error) == code


def test_every_public_error_is_of_the_one_family():
    classes = [value for value in vars(errors).values() if isinstance(value, type) and issubclass(value, Exception)
               and not issubclass(value, Warning)]
    assert len(classes) >= 9 and all(issubclass(c, errors.SamcellError) for c in classes)
    assert {c for c in classes if issubclass(c, errors.InputFileError)} == {
        errors.InputFileError, errors.ImageReadError, errors.ImageValueError}


def test_the_command_line_shows_a_samcell_warning_as_one_line(monkeypatch):
    """A warning meant for the user (e.g. the bf16 guard's fallback) reads `warning: ...`, no source location."""
    import warnings

    from click.testing import CliRunner

    from samcell_rt import registry
    from samcell_rt.cli import main

    def table():
        warnings.warn("bf16 fails the accuracy guard: running fp32", errors.SamcellWarning, stacklevel=2)
        return []

    monkeypatch.setattr(registry, "model_rows", table)
    result = CliRunner().invoke(main, ["models", "list"])
    assert result.exit_code == 0
    assert result.output.strip() == "warning: bf16 fails the accuracy guard: running fp32"
