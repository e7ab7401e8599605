"""Training throughput (tiles/s) of the bundled trainer: full fine-tuning steps on synthetic data.

    python benchmarks/train_throughput.py --config vit-b --batch-size 2 --steps 3 --out benchmarks/results/train_vitb_cpu.json
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
import numpy as np

from samcell_rt.machine import emit_report, machine_info


@click.command()
@click.option("--config", default="vit-b", show_default=True)
@click.option("--batch-size", default=2, show_default=True)
@click.option("--steps", default=3, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(config: str, batch_size: int, steps: int, device: str, out: Path | None) -> None:
    import torch

    from samcell_rt.synthetic import synthetic_cells
    from samcell_rt.train.annotations import Sample
    from samcell_rt.train.data import Augment
    from samcell_rt.train.loop import Recipe, Trainer, _batch

    samples = []
    for seed in range(3):
        image, labels = synthetic_cells((512, 512), count=40, radius=16, seed=seed)
        samples.append(Sample(f"s{seed}", np.rint(image * 255).astype(np.uint8), labels))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(samples, tmp, Recipe(config=config, batch_size=batch_size, val_crops=batch_size), device)
        rng = np.random.default_rng(0)
        times = []
        for step in range(steps + 1):  # the first step warms up
            batch = _batch(trainer.train_set, rng, batch_size, 256, Augment())
            start = time.perf_counter()
            loss = trainer.loss(*batch)
            trainer.optimizer.zero_grad()
            loss.backward()
            trainer.optimizer.step()
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            if step:
                times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    report = {"benchmark": "train_throughput", "config": config, "device": str(trainer.device),
              "batch_size": batch_size, "seconds_per_step": seconds, "tiles_per_second": batch_size / seconds,
              "threads": torch.get_num_threads(), "machine": machine_info()}
    emit_report(report, out)


if __name__ == "__main__":
    main()
