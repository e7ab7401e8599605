"""Stage the default model's training run for a lent GPU machine (run here, on the CPU machine).

The GPU machine cannot download, and a call carries at most 64 MiB with the working tree, so this
writes everything the run needs under `.gpudata/` (ignored by git): the training sources as plain
`X.tif` + `X_labels.tif` pairs in one folder per source (the trainer validates and samples per
folder, as with `pkg:` sources), and the LiteMedSAM starting weights; then tars them and splits the
archive into parts that fit beside the working tree as it is now (benchmarks/gpu_plan.py: 64 MiB per
call, 4 MiB spare), one folder each (`.gpudata/parts/NN/`). Each part travels in
its own call (`carry: [".gpudata/parts/NN"]`, command `true`), then `scripts/gpu_train.sh` trains.

    python scripts/gpu_train_stage.py   # writes .gpudata/, prints the calls to make
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tarfile
from pathlib import Path

import tifffile

from samcell_rt.export.checkpoints import packaged_litemedsam
from samcell_rt.train.sources import load_packaged

SOURCES = ("bacteria", "hela", "cho", "scellseg-cyto")  # the default model's; never the reserved sets
ROOT = Path(".gpudata")


def part_bytes() -> int:
    """What one device call may carry beside the working tree (the GPU check's plan measures it)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from gpu_plan import plan

    room = plan(Path(__file__).resolve().parents[1])
    if room.capacity_bytes <= 0:
        raise SystemExit(f"no room beside the working tree in a device call: {room.problem}")
    return room.capacity_bytes


def main() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    staged = ROOT / "staged"
    for source in SOURCES:
        folder = staged / "data" / source
        folder.mkdir(parents=True)
        for index, sample in enumerate(load_packaged(source)):
            tifffile.imwrite(folder / f"{index:03d}.tif", sample.image, compression="zlib")
            tifffile.imwrite(folder / f"{index:03d}_labels.tif", sample.labels, compression="zlib")
    shutil.copy(packaged_litemedsam(), staged / "lite_medsam.pth")
    archive = ROOT / "train.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(staged, arcname="staged")
    data = archive.read_bytes()
    size = part_bytes()
    for number, start in enumerate(range(0, len(data), size)):
        part = ROOT / "parts" / f"{number:02d}"
        part.mkdir(parents=True)
        (part / f"train.tar.part{number:02d}").write_bytes(data[start : start + size])
    (ROOT / "parts" / "train.tar.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  train.tar\n")
    shutil.rmtree(staged)
    archive.unlink()
    parts = sorted(p.name for p in (ROOT / "parts").iterdir() if p.is_dir())
    print(f"{len(data) / 2**20:.1f} MiB in {len(parts)} parts; one call each with carry "
          f"[\".gpudata/parts/NN\"] and command `true`, then `bash scripts/gpu_train.sh` with carry "
          "[\".gpudata/parts/train.tar.sha256\"]")


if __name__ == "__main__":
    main()
