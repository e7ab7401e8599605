"""bf16 judged by the cells, measured for one model on this CPU in one process: the guard's verdict and
its time, then seconds per image of the cpu engine, OpenVINO (fp32, and bf16 where the CPU has it
natively and the guard passed) and the reference pipeline (`--peer`), interleaved round by round
(`samcell_rt.benchmark.run_bench`), with the acceptance of issue 38 worked out from them.

Where the CPU has no native bf16, `auto` never takes bf16 and OpenVINO compiles fp32 whatever it is
asked, so the guard is measured here directly (its numbers are then fp32 against fp32: they show what
the guard costs, not what bf16 does) and no bf16 row is run.

The peer is the paper's pipeline (PyPI `samcell`, ViT-B): give it a SAMCell ViT-B checkpoint. It cannot
run samcell-lite's own weights (a RuntimeError in its mask decoder: image embeddings 256 wide against
dense prompt embeddings 64 wide), so "the default model against the reference pipeline" is samcell-lite here
against ViT-B there, per image.

    python benchmarks/bf16_lite.py --model samcell-lite --peer samcell-vitb.pt --sizes 704x520 --repeats 3 \
        --out benchmarks/results/bf16_lite_cpu.json
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict

import click

SPEEDUP_VS_CPU, SPEEDUP_VS_PEER = 1.8, 45.0  # issue 38's acceptance, per image


def guard(path) -> dict:
    """The guard's verdict for `path` here, its time, and what OpenVINO computes when asked for bf16."""
    from samcell_rt.runtime.contract import ModelInfo, read_props
    from samcell_rt.runtime.cpu import native_bf16
    from samcell_rt.runtime.engines import bf16_guard
    from samcell_rt.runtime.engines.openvino import OpenVinoEngine, bf16_agreement, bf16_verdict

    native = native_bf16()
    if native:
        verdict = bf16_verdict(path)  # as `auto` gets it (measured now unless the user cache holds it)
    else:
        start = time.perf_counter()
        found = bf16_agreement(path, ModelInfo.from_props(path, read_props(path)).tile)
        verdict = bf16_guard.Verdict.judged(found, time.perf_counter() - start)
    return {**asdict(verdict), "native_bf16": native,
            "bf16_computed_as": OpenVinoEngine(path, precision="bf16").precision}


def acceptance(report: dict) -> dict:
    """Per size: the bf16 row's median speed-up over the cpu engine and each row's over the peer."""
    found = {}
    for pair in report["pairs"]:
        if pair["label"].startswith("openvino@bf16") and pair["versus"].startswith("cpu"):
            found[f"{pair['size']} bf16 vs cpu"] = {"median": pair["median_speedup"], "needed": SPEEDUP_VS_CPU,
                                                   "met": pair["median_speedup"] >= SPEEDUP_VS_CPU}
        if pair["versus"].startswith("reference"):
            found[f"{pair['size']} {pair['label']} vs reference"] = {
                "median": pair["median_speedup"], "needed": SPEEDUP_VS_PEER,
                "met": pair["median_speedup"] >= SPEEDUP_VS_PEER}
    return found


@click.command()
@click.option("--model", default="samcell-lite", show_default=True)
@click.option("--peer", default=None, help="A SAMCell ViT-B checkpoint for the reference pipeline.")
@click.option("--sizes", default="704x520", show_default=True)
@click.option("--repeats", default=3, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None)
def main(model: str, peer: str | None, sizes: str, repeats: int, out) -> None:
    from samcell_rt.benchmark import bench_machine, run_bench
    from samcell_rt.machine import emit_report
    from samcell_rt.registry import resolve_model

    load_before = list(os.getloadavg())
    path = resolve_model(model)
    verdict = guard(path)
    print("guard", verdict, flush=True)
    engines = ["cpu", "openvino@fp32"] + (["openvino@bf16"] if verdict["native_bf16"] and verdict["passed"] else [])
    bench = run_bench(str(path), engines, sizes.split(","), [None], repeats, peer)
    emit_report({"model": model, "file": str(path), "guard": verdict, "bench": bench,
                 "acceptance": acceptance(bench), "machine": bench_machine(load_before)}, out)


if __name__ == "__main__":
    main()
