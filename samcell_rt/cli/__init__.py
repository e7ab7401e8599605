"""The `samcell-rt` command line: parses options and delegates; no logic lives here.

Exit codes (samcell_rt.errors.exit_code is the one mapping, used by `_Group`): 0 all good, 1 some input failed
(reported in summary.csv and on stderr), 2 usage error, unusable model or output folder. Errors
of the SamcellError family print one line, never a traceback.
"""

from __future__ import annotations

import warnings

import click

from ..errors import SamcellError, SamcellWarning, exit_code
from ..version import __version__
from .apps import gui, serve, web
from .export import build_engine_command, export_command
from .measure import bench, evaluate
from .models import models
from .options import DEFAULT_THRESHOLDS
from .segment import demo, report, segment
from .training import adapt, train

__all__ = ["DEFAULT_THRESHOLDS", "main"]


class _Group(click.Group):
    """Click group that ends every SamcellError with its message and its exit code."""

    def invoke(self, ctx: click.Context):
        with warnings.catch_warnings():
            shown = warnings.showwarning

            def show(message, category, *args, **kwargs):
                if issubclass(category, SamcellWarning):  # one line, no source location
                    click.echo(f"warning: {message}", err=True)
                else:
                    shown(message, category, *args, **kwargs)

            warnings.showwarning = show
            try:
                return super().invoke(ctx)
            except SamcellError as exc:
                click.echo(f"error: {exc}", err=True)
                ctx.exit(exit_code(exc))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="samcell-rt")
def main() -> None:
    """Fast SAMCell cell segmentation for microscope images.

    \b
    Example:
      samcell-rt segment images/ --out results/
    """


for _command in (segment, report, demo, export_command, build_engine_command, serve, gui, web, bench, evaluate, models,
                 train, adapt):
    main.add_command(_command)
