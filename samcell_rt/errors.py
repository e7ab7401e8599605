"""Error types users and integrators can catch; every message names the file and the cause.

One family: everything a user can cause or meet subclasses SamcellError, and `exit_code` is the
one place that says how the command line ends for each kind (0 ok, 1 some file failed, 2 usage
or model problem).
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK, EXIT_FILE_FAILED, EXIT_USAGE = 0, 1, 2


class SamcellError(Exception):
    """Base class for all samcell-rt errors."""

    exit_code = EXIT_USAGE


class ImageReadError(SamcellError):
    """An input image is missing, empty, truncated, corrupt, too large or of an unsupported kind."""

    exit_code = EXIT_FILE_FAILED

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class ImageValueError(SamcellError, ValueError):
    """The pixel values or the shape of an image cannot be segmented (NaN/inf, not 2-D, empty)."""

    exit_code = EXIT_FILE_FAILED


class ModelError(SamcellError):
    """A model file cannot be used: missing, unreadable, breaking the ONNX contract, or giving bad output."""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"model {self.path}: {cause}")


class EngineUnavailableError(SamcellError):
    """A requested inference engine cannot start on this machine, or does not fit the model file."""


class InputError(SamcellError):
    """Inputs or options that cannot be used: missing inputs, outputs that would collide, values out of range."""


class OutputError(SamcellError):
    """The output folder cannot be created or written, or is in use by another run."""


class DownloadError(SamcellError):
    """A download failed or its checksum did not match."""


def exit_code(error: BaseException | None) -> int:
    """The command-line exit status for an error (None: success)."""
    if error is None:
        return EXIT_OK
    if isinstance(error, SamcellError):
        return error.exit_code
    return EXIT_USAGE
