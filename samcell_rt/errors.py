"""Error types users and integrators can catch; every message names the file and the cause.

One family: everything a user can cause or meet subclasses SamcellError. Whose fault an error is
is told by its class, checked with `isinstance`: an `InputFileError` is one input file's fault
(a batch reports it and goes on); every other SamcellError means nothing can run as asked.
`exit_code` is the one place that turns that into the command line's exit status.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK, EXIT_FILE_FAILED, EXIT_USAGE = 0, 1, 2


class SamcellError(Exception):
    """Base class for all samcell-rt errors."""


class InputFileError(SamcellError):
    """One input file cannot be segmented; the other files of a batch still run."""


class ImageReadError(InputFileError):
    """An input image is missing, empty, truncated, corrupt, too large or of an unsupported kind."""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class ImageValueError(InputFileError, ValueError):
    """The pixel values or the shape of an image cannot be segmented (NaN/inf, not 2-D, empty)."""


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


class DataError(InputError):
    """Annotated data (training pairs, references to score against, packaged sources) that cannot be used."""


class OutputError(SamcellError):
    """The output folder cannot be created or written, or is in use by another run."""


class DownloadError(SamcellError):
    """A download failed or its checksum did not match."""


class SamcellWarning(UserWarning):
    """A remark the user should read (e.g. a precision fallback); the CLI prints it as one `warning:` line."""


def exit_code(error: BaseException | None) -> int:
    """The command-line exit status for an error (None: success): 1 for one input file's fault, else 2."""
    if error is None:
        return EXIT_OK
    if isinstance(error, InputFileError):
        return EXIT_FILE_FAILED
    return EXIT_USAGE
