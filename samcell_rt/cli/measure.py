"""`evaluate` and `bench`: scores of labels against references, and speed of engines."""

from __future__ import annotations

from pathlib import Path

import click

from .options import model_option


@click.command()
@click.option("--pred", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of predicted labels (<stem>_labels.tif).")
@click.option("--gt", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of reference labels (<stem>.tif, or CTC man_seg<NNN>.tif).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the full report as JSON.")
@click.option("--sweep", "sweep_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Threshold ablation from saved <stem>_distance.tif maps in this folder (no model run).")
def evaluate(pred, gt, json_out, sweep_dir) -> None:
    """Score predicted labels against references: CTC SEG, DET, OP_CSB, AP50/AP75, count error.

    \b
    Example:
      samcell-rt evaluate --pred results/ --gt reference/
    """
    import json

    from ..evaluate import evaluate_folders, threshold_sweep
    from ..runtime.atomic import write_text_atomic

    if pred is None and sweep_dir is None:
        raise click.UsageError("give --pred FOLDER (score labels) or --sweep FOLDER (threshold ablation)")
    if pred is not None and sweep_dir is not None:
        raise click.UsageError("give --pred or --sweep, not both")
    report = evaluate_folders(pred, gt) if pred else {"sweep": threshold_sweep(sweep_dir, gt)}
    if pred:
        for image in report["images"]:
            missing = "  (no prediction: scored as empty)" if image.get("missing") else ""
            click.echo(f"{image['name']:<30} SEG {image['SEG']:.4f}  DET {image['DET']:.4f}  "
                       f"AP50 {image['AP50']:.4f}  cells {image['n_pred']}/{image['n_ref']}{missing}")
        click.echo(f"{'overall':<30} SEG {report['SEG']:.4f}  DET {report['DET']:.4f}  OP_CSB {report['OP_CSB']:.4f}  "
                   f"AP50 {report['AP50']:.4f}  AP75 {report['AP75']:.4f}")
    else:
        for row in report["sweep"]:
            click.echo(f"peak {row['peak']:.2f} fill {row['fill']:.2f}  SEG {row['SEG']:.4f}  DET {row['DET']:.4f}  "
                       f"OP_CSB {row['OP_CSB']:.4f}")
    if json_out:
        write_text_atomic(json_out, json.dumps(report, indent=2))


@click.command()
@model_option(required=True)
@click.option("--engines", default="cpu", show_default=True,
              help="Comma-separated engines to compare; openvino@bf16 / openvino@fp32 hold OpenVINO to one precision "
                   "(the bf16 accuracy guard bypassed, for measurement).")
@click.option("--sizes", default="512,704x520,2048", show_default=True, help="Image sizes, N or WxH.")
@click.option("--batch-sizes", default="", help="Comma-separated batch sizes (default: each engine's own).")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(min=1), help="Runs per case (median kept).")
@click.option("--peer", "peer_checkpoint", default=None, type=click.Path(exists=True, path_type=Path),
              help="Also run the PyPI samcell pipeline with this checkpoint (the model's source weights).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Results JSON; a .md table and a .png plot are written beside it.")
def bench(model, engines, sizes, batch_sizes, repeats, peer_checkpoint, out) -> None:
    """Measure per-stage latency and throughput (and the reference pipeline with --peer).

    \b
    Example:
      samcell-rt bench --model samcell-lite --engines cpu --sizes 512,2048 --out bench.json
    """
    import json

    from ..benchmark import markdown_table, plot, run_bench
    from ..runtime.atomic import write_text_atomic

    batches = [int(b) for b in batch_sizes.split(",") if b] or [None]
    report = run_bench(model, engines.split(","), sizes.split(","), batches, repeats,
                       str(peer_checkpoint) if peer_checkpoint else None)
    table = markdown_table(report)
    click.echo(table)
    if out:
        write_text_atomic(out, json.dumps(report, indent=2))
        write_text_atomic(out.with_suffix(".md"), table)
        try:
            plot(report, out.with_suffix(".png"))
        except ImportError:
            click.echo("matplotlib not installed: no plot written", err=True)
