"""Options and parameter types several commands share, so each reads and validates them the same way."""

from __future__ import annotations

import importlib

import click

from ..runtime import DIAMETER_MODES, MAX_PIXELS
from ..runtime.engines import AUTO, CHOICES


def requires_extra(extra: str, *modules: str) -> None:
    """Import `modules` or stop with a usage error naming the extra that provides them."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise click.UsageError(f"this command needs the '{extra}' extra: pip install \"samcell-rt[{extra}]\" "
                                   f"({exc.name} missing)") from exc


def model_option(required: bool = False):
    return click.option("--model", "-m", required=required, default=None,
                        help="Model: an .onnx or .engine file, or a model name from `samcell-rt models list` "
                             + ("" if required else "[default: the shipped samcell-lite]."))


def engine_option(f=None, default: str = "cpu"):
    """--engine; `segment`, `serve` and `gui` default to auto (the fastest accurate engine installed here)."""
    def add(f):
        return click.option("--engine", default=default, show_default=True, type=click.Choice(CHOICES),
                            help=f"Inference engine ({AUTO}: a built TensorRT engine, else CUDA, else OpenVINO in bf16 "
                                 "where the CPU has native bf16 and the model's bf16 labels agree with its fp32 "
                                 "labels, else CPU).")(f)
    return add(f) if f is not None else add


# what the shipped default model stores, shown in --help without loading it (tests/test_cli.py checks them)
DEFAULT_THRESHOLDS = (0.40, 0.05)  # (peak, fill) of samcell-lite


def threshold_options(f):
    peak, fill = DEFAULT_THRESHOLDS
    f = click.option("--fill", type=click.FloatRange(0, 1), default=None,
                     help="How far a cell reaches out from its centre: pixels whose distance value is above this belong "
                          f"to a cell (0-1; default: the model's own, {fill:.2f} for the shipped samcell-lite). Lower it if "
                          "outlines are too tight, raise it if cells bleed into the background.")(f)
    return click.option("--peak", type=click.FloatRange(0, 1), default=None,
                        help="How clearly a cell centre must stand out to start a cell (0-1; default: the model's "
                             f"own, {peak:.2f} for the shipped samcell-lite). Raise it if one cell is split into several, "
                             "lower it if faint cells are missed.")(f)


class _DiameterParam(click.ParamType):
    """--diameter: a positive number of pixels, `auto` or `off`, parsed into a `Diameter` (runtime/scale.py)."""

    name = "PX|" + "|".join(DIAMETER_MODES)

    def convert(self, value, param, ctx):
        from ..errors import InputError
        from ..runtime.scale import Diameter

        try:
            return Diameter.parse(value)
        except InputError as exc:
            self.fail(str(exc), param, ctx)


class PixelSize(click.ParamType):
    """--pixel-size: micrometres per pixel, a finite number in the range any calibration can hold."""

    name = "UM"

    def convert(self, value, param, ctx):
        from ..runtime.limits import pixel_size_problem

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of micrometres", param, ctx)
        if problem := pixel_size_problem(number):
            self.fail(problem, param, ctx)
        return number


def diameter_option(f):
    return click.option("--diameter", type=_DiameterParam(), default="auto", show_default=True,
                        help="Typical cell diameter in pixels: each image is resized so its cells reach the model at "
                             "the size it was trained on (outputs stay at the image's size). auto: segment as is, then "
                             "step towards the model's size while the distance map grows more confident (up to 3 "
                             "more passes); off: never rescale. The estimate is reported per image (summary.csv diameter_px).")(f)


def server_options(port: int):
    """--host / --port for the HTTP programs (local only unless the user opens it up)."""
    def decorate(f):
        f = click.option("--port", default=port, show_default=True, type=click.IntRange(0, 65535),
                         help="Port to listen on.")(f)
        return click.option("--host", default="127.0.0.1", show_default=True,
                            help="Interface to listen on (local only by default).")(f)
    return decorate


def max_pixels_option(f):
    return click.option("--max-pixels", type=click.IntRange(min=1), default=MAX_PIXELS, show_default=True,
                        help="Refuse images whose header claims more pixels (guards against lying or broken "
                             "headers); raise it for real giant mosaics.")(f)


def series_options(f):
    """--time-pattern / --well-pattern: how file names carry a time point or a well id (segment, report)."""
    from ..runs.patterns import DEFAULT_TIME_PATTERN, DEFAULT_WELL_PATTERN

    f = click.option("--well-pattern", default=DEFAULT_WELL_PATTERN, show_default=True,
                     help="Regular expression finding a well id in file names, with groups (?P<row>A-P) and "
                          "(?P<col>1-24); two or more wells give plate maps (plate_confluency.png, plate_cells.png) "
                          "and plate_wells.csv.")(f)
    return click.option("--time-pattern", default=DEFAULT_TIME_PATTERN, show_default=True,
                        help="Regular expression finding a time or frame index in file names, with a group "
                             "(?P<time>...) and optionally (?P<unit>h|min|s); files that differ only there form "
                             "a timeline (<series>_timeline.csv/.png). Stacks use the time in their metadata.")(f)
