"""The missed-cells quality flag on rendered failures: dense tissue in looks the default model never trained on.

Each case is a Voronoi tessellation (cells tile the whole field, as in an epithelium; `--cell` px
apart) rendered as a membrane stain, DIC relief or phase contrast (`samcell_rt.train.render`, one
seed per case). Per case: OP_CSB against the tessellation, cells found / drawn, and the flags the
runtime raised. With `--real`, the false alarms: the same flags on real images the model reads well
(held-out E. coli frames, BBBC007 nuclei, and both rendered as a membrane stain).

    python benchmarks/missed_cells.py --model samcell-lite --out benchmarks/results/missed_cells_cpu.json
"""

from __future__ import annotations

import click
import numpy as np

from samcell_rt.machine import emit_report, machine_info

LOOKS = ("membrane", "dic", "phase")
FLAGS = {"missed": "the area the map marks as cells", "unread": "of the image's structure"}  # flag -> its text
REAL = ("bacteria-heldout", "bbbc007")


@click.command()
@click.option("--model", default="samcell-lite", show_default=True)
@click.option("--cell", "spacings", multiple=True, type=int, default=(25, 40, 60), show_default=True)
@click.option("--size", default=512, show_default=True)
@click.option("--real", is_flag=True, help="Also count the flags on real held-out and BBBC007 images (false alarms).")
@click.option("--out", type=click.Path(dir_okay=False), default=None)
def main(model, spacings, size, real, out) -> None:
    from samcell_rt.evaluate import score_pair
    from samcell_rt.registry import resolve_model
    from samcell_rt.runtime.segmenter import Segmenter
    from samcell_rt.synthetic import tessellation
    from samcell_rt.train.render import render_appearance

    segmenter = Segmenter(str(resolve_model(model)), engine="cpu")
    cases = []
    for spacing in spacings:
        labels = tessellation(size, spacing, seed=spacing)
        for look in LOOKS:
            image = render_appearance(labels, np.random.default_rng(spacing), look)
            result = segmenter.segment(image)
            score, fired = score_pair(labels, result.labels).as_dict(), flags(result.warnings)
            cases.append({"spacing_px": spacing, "look": look, "OP_CSB": score["OP_CSB"], "found": score["n_pred"],
                          "drawn": score["n_ref"], **fired, "warnings": result.warnings})
            click.echo(f"{spacing} px {look}: OP_CSB {score['OP_CSB']:.3f}, {score['n_pred']}/{score['n_ref']} cells, "
                       f"flags {fired}", err=True)
    report = {"machine": machine_info(), "model": model, "size": size, "cases": cases}
    if real:
        report["real"] = false_alarms(segmenter)
    emit_report(report, out)


def flags(warnings: list[str]) -> dict[str, bool]:
    return {f"{name}_flag": any(text in w for w in warnings) for name, text in FLAGS.items()}


def false_alarms(segmenter) -> dict:
    """Per image: OP_CSB and which flags fired, on real images as they are and rendered as a membrane stain."""
    from samcell_rt.evaluate import score_pair
    from samcell_rt.train.render import rendered_copy
    from samcell_rt.train.sources import load_packaged

    samples = [s for name in REAL for s in load_packaged(name)]
    rows = []
    for sample in samples + [rendered_copy(s, "membrane") for s in samples]:
        result = segmenter.segment(sample.image)
        rows.append({"image": sample.name, "source": sample.source,
                     "OP_CSB": score_pair(sample.labels, result.labels).as_dict()["OP_CSB"], **flags(result.warnings)})
    fired = {f"{name}_flag": sum(row[f"{name}_flag"] for row in rows) for name in FLAGS}
    click.echo(f"real images: {len(rows)}, flags fired {fired}", err=True)
    return {"images": len(rows), "fired": fired, "rows": rows}


if __name__ == "__main__":
    main()
