"""Seconds and peak memory per whole-model training step of the shipped SAMCell-Lite: glibc's default
allocator, `train.memory.keep_freed_memory` (what `adapt` and `train` call), and that with the
batch's gradients added up over parts of 2 crops (`finetune.batch_gradients`, `part`), in one run.

Each variant runs in its own fresh interpreter (the allocator setting holds for a whole process), one
after the other: the `full` recipe's step (batch of 4 uint8 tiles, forward, the paper's L2 loss,
backward, AdamW) on the same seeded tiles. The first `--warm` steps grow the heap and are reported apart; the
median of the rest is the steady step. User and system CPU seconds and minor page faults per step
come from getrusage, peak resident size from ru_maxrss.

    python benchmarks/finetune_step.py --steps 8 --out benchmarks/results/finetune_step_cpu.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click

STEPS = """
import json, resource, sys, time
import numpy as np, torch
from samcell_rt.train.memory import keep_freed_memory
from samcell_rt.train.adapt_job import starting_model
from samcell_rt.export.model import SamCellTiles
from samcell_rt.train.finetune import batch_gradients
kept = keep_freed_memory() if sys.argv[1] != "default" else False
part = 2 if sys.argv[1] == "keep-part2" else 4
wrapper = SamCellTiles(starting_model(sys.argv[3]).model, 256).eval()
params = list(wrapper.parameters())
optimizer = torch.optim.AdamW(params, lr=1e-5)
rng = np.random.default_rng(0)
tiles = torch.from_numpy(rng.integers(0, 256, (4, 1, 256, 256), dtype=np.uint8))
targets = torch.from_numpy(rng.random((4, 1, 256, 256), dtype=np.float32))
rows = []
for _ in range(int(sys.argv[2])):
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    batch_gradients(wrapper, 0, tiles, targets, part, False)
    optimizer.step()
    after = resource.getrusage(resource.RUSAGE_SELF)
    rows.append(dict(seconds=round(time.perf_counter() - start, 2), user=round(after.ru_utime - before.ru_utime, 1),
                     sys=round(after.ru_stime - before.ru_stime, 1), faults=after.ru_minflt - before.ru_minflt))
print(json.dumps(dict(kept=kept, steps=rows, peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 1))))
"""


def run(mode: str, steps: int, model: str, warm: int) -> dict:
    out = subprocess.run([sys.executable, "-c", STEPS, mode, str(steps), model], capture_output=True, text=True,
                         check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    steady = result["steps"][warm:]
    result["steady_step_seconds"] = sorted(s["seconds"] for s in steady)[len(steady) // 2]
    result["steady_sys_seconds"] = sorted(s["sys"] for s in steady)[len(steady) // 2]
    return result


@click.command()
@click.option("--steps", default=8, show_default=True)
@click.option("--warm", default=2, show_default=True, help="first steps (heap growth) left out of the median")
@click.option("--model", default="samcell-lite", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(steps: int, warm: int, model: str, out: Path | None) -> None:
    from samcell_rt.machine import emit_report, machine_info

    load_before = os.getloadavg()
    default, kept, parts = (run(mode, steps, model, warm) for mode in ("default", "keep", "keep-part2"))
    emit_report({"machine": machine_info(), "model": model, "batch": 4, "load_before": load_before,
                 "load_after": os.getloadavg(), "default_allocator": default, "keep_freed_memory": kept,
                 "keep_freed_memory_parts_of_2": parts,
                 "speedup_steady": round(default["steady_step_seconds"] / kept["steady_step_seconds"], 2),
                 "speedup_steady_parts_of_2": round(default["steady_step_seconds"] / parts["steady_step_seconds"], 2)},
                out)


if __name__ == "__main__":
    main()
