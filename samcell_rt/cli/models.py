"""`models list|info|pull`: the models known here, what each is, and downloads."""

from __future__ import annotations

import sys

import click

from ..export import TOLERANCE
from ..runtime.engines.table import Precision


@click.group()
def models() -> None:
    """Known models: list, inspect, download.

    \b
    Example:
      samcell-rt models info samcell-lite
    """


@models.command("list")
def models_list() -> None:
    """List shipped and downloadable models and whether they are ready here.

    \b
    Example:
      samcell-rt models list
    """
    from ..registry import model_rows

    for row in model_rows():
        state = "ready" if row.ready else "not downloaded"
        name = row.name + (" (default)" if row.default else "")
        click.echo(f"{name:<32} {row.kind:<9} {state:<15} {row.path}")


@models.command("info")
@click.argument("name")
def models_info(name) -> None:
    """Show everything known about model NAME (JSON).

    \b
    Example:
      samcell-rt models info samcell-lite
    """
    import json

    from ..registry import model_info

    click.echo(json.dumps(model_info(name), indent=2))


@models.command("pull")
@click.argument("name")
@click.option("--precision", type=click.Choice(list(TOLERANCE)), default=Precision.FP32.value, show_default=True,
              help="Precision of the exported ONNX model.")
def models_pull(name, precision) -> None:
    """Download model NAME (resumable, sha256-checked) and export it to ONNX (needs the `export` extra).

    \b
    Example:
      samcell-rt models pull samcell-generalist
    """
    from tqdm import tqdm

    from ..registry import pull_model

    with tqdm(unit="B", unit_scale=True, file=sys.stderr, desc=name) as bar:
        def progress(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)

        path = pull_model(name, progress, precision)
    click.echo(f"ready: {path}")
