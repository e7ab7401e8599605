"""Read speed of the chosen format readers against the bioio plugins, on the same files.

Writes a CZI (pylibCZIrw), a LIF (tests' LAS X layout writer) and an OME-Zarr image (ome-zarr), each
8 planes of 2048 x 2048 uint16, and reads every plane as samcell-rt does (runtime.io.read_image, which
uses pylibCZIrw / liffile / zarr) and through bioio (BioImage(...).get_image_data("TCZYX")), best of
`--repeats`. ND2 is timed on pims_nd2's small sample (nd2 vs bioio-nd2). bioio is optional: run this
with a Python where bioio, bioio-czi, bioio-lif, bioio-nd2 and bioio-ome-zarr are installed to compare.

    PYTHONPATH=. python benchmarks/format_readers.py --out benchmarks/results/format_readers.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def best_of(repeats: int, read) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        read()
        times.append(time.perf_counter() - start)
    return min(times)


def write_files(folder: Path, frames: int, size: int) -> dict[str, tuple[Path, np.ndarray]]:
    from tests.formats_files import write_czi, write_lif, write_ome_zarr

    data = np.random.default_rng(0).integers(0, 4000, (frames, size, size)).astype(np.uint16)
    files = {"czi": write_czi(folder / "b.czi", data[None, :, None]),
             "lif": write_lif(folder / "b.lif", [data], interval_s=1.0),
             "ome-zarr": folder / "b.ome.zarr"}
    write_ome_zarr(files["ome-zarr"], data, "tyx", [1.0, 0.65, 0.65], chunks=(1, 1024, 1024))
    from tests.formats_files import nd2_sample

    if nd2_sample() is not None:
        files["nd2"] = nd2_sample()
    return {kind: (path, data) for kind, path in files.items()}


def bioio_reader(kind: str):
    try:
        from bioio import BioImage
        plugin = {"czi": "bioio_czi", "lif": "bioio_lif", "ome-zarr": "bioio_ome_zarr", "nd2": "bioio_nd2"}[kind]
        reader = __import__(plugin).Reader
    except ImportError:
        return None
    return lambda path: BioImage(path, reader=reader).get_image_data("TCZYX")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from samcell_rt.runtime.io import read_image

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, (path, data) in write_files(Path(tmp), args.frames, args.size).items():
            ours = best_of(args.repeats, lambda: read_image(path, channel=0 if kind == "nd2" else None))
            entry = {"file_mb": round(sum(p.stat().st_size for p in ([path] if path.is_file() else path.rglob("*"))
                                          if p.is_file()) / 2**20, 2), "samcell_rt_s": round(ours, 4)}
            bioio = bioio_reader(kind)
            if bioio is not None:
                bioio(path)  # first call imports and warms up the plugin
                entry["bioio_s"] = round(best_of(args.repeats, lambda: bioio(path)), 4)
                entry["bioio_over_samcell_rt"] = round(entry["bioio_s"] / ours, 2)
            results[kind] = entry
            print(kind, entry, flush=True)
    report = {"benchmark": "format_readers", "frames": args.frames, "size": args.size, "repeats": args.repeats,
              "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
              "results": results}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
