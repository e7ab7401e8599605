"""Peak memory and time of `samcell-rt segment` on a large 16-bit plate (banded path).

Writes a synthetic tiled, compressed 16-bit plate band by band (never whole in memory), runs the
real command in a child process under /usr/bin/time, and records its peak RSS and wall time.

    python benchmarks/plate_memory.py --size 20000 --out benchmarks/results/plate_20k_cpu.json
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from samcell_rt.machine import emit_report, machine_info


def write_plate(path: Path, size: int, density: float = 1 / 6000, radius: int = 12, seed: int = 0) -> int:
    """A size x size uint16 plate with bright discs; returns the number of discs."""
    import tifffile

    rng = np.random.default_rng(seed)
    count = int(size * size * density)
    centres = rng.uniform(radius, size - radius, (count, 2))
    centres = centres[np.argsort(centres[:, 0])]
    band = 256  # one row of 256 px TIFF tiles at a time

    def tiles():
        for top in range(0, size, band):
            rows = min(band, size - top)
            block = rng.normal(6000, 1200, (rows, size)).clip(0, 65535)
            near = centres[(centres[:, 0] > top - radius) & (centres[:, 0] < top + rows + radius)]
            yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
            disc = yy**2 + xx**2 <= radius**2
            for cy, cx in near:
                y0, x0 = int(cy) - radius - top, int(cx) - radius
                ys, xs = slice(max(y0, 0), min(y0 + 2 * radius + 1, rows)), slice(x0, x0 + 2 * radius + 1)
                sub = disc[ys.start - y0 : ys.stop - y0]
                block[ys, xs][sub] = 42000
            block = block.astype(np.uint16)
            for x in range(0, size, band):
                tile = np.zeros((band, band), np.uint16)
                part = block[:, x : x + band]
                tile[: part.shape[0], : part.shape[1]] = part
                yield tile

    tifffile.imwrite(path, tiles(), shape=(size, size), dtype=np.uint16, tile=(band, band), compression="zlib",
                     bigtiff=True, photometric="minisblack")
    return count


@click.command()
@click.option("--size", default=20000, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(size: int, out: Path | None) -> None:
    from samcell_rt.synthetic import blob_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        discs = write_plate(tmp / "plate.tif", size)
        click.echo(f"wrote {size}x{size} plate with {discs} discs in {time.perf_counter() - start:.0f} s", err=True)
        blob_model(tmp / "blob.onnx")
        command = [sys.executable, "-m", "samcell_rt.cli", "segment", str(tmp / "plate.tif"), "-m",
                   str(tmp / "blob.onnx"), "-o", str(tmp / "out")]
        proc = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
        wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", proc.stderr).group(1)
        summary = (tmp / "out" / "summary.csv").read_text()
        labels_mb = (tmp / "out" / "plate_labels.tif").stat().st_size / 2**20
    report = {"benchmark": "plate_memory", "image": f"{size}x{size} uint16, {discs} synthetic cells",
              "model": "blob test model", "peak_rss_gib": peak_kb / 2**20, "wall": wall,
              "labels_file_mib": labels_mb, "summary": summary, "machine": machine_info()}
    emit_report(report, out)


if __name__ == "__main__":
    main()
