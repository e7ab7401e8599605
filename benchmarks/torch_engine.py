"""BENCHMARK ADAPTER, not a product engine: a torch module behind samcell-rt's engine protocol.

The lent H100/H200 has torch with CUDA 13 but not onnxruntime-gpu (244 MiB, more than a device
call may carry beside the tree), so the GPU check runs the models through torch there, inside
samcell-rt's own pipeline (tiling, CLAHE, blending, watershed, measurements): `Segmenter` accepts
any object with the engine protocol. The runtime itself never imports torch; this file lives in
benchmarks/ and is not in the engine table.

Precision is torch autocast (fp16 or bf16 matrix work, LayerNorm/softmax kept in fp32 by autocast's
rules), not weights cast to half: the graph the runtime ships folds the same pre-processing, and
autocast is what the trainer uses on GPUs. With `graphs=True` one CUDA graph is captured for a
full batch and replayed; shorter batches are padded into it (rows are independent).
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from samcell_rt.runtime.contract import ModelInfo

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
WARMUP_RUNS = 3  # before a capture: lets cuDNN/cuBLAS pick kernels and allocations settle


class TorchEngine:
    """Runs `module` ((B,1,T,T) uint8 tensor -> (B,1,T,T) maps) on `device`; thread-safe (one lock)."""

    pipelined = True  # a GPU: prepare and post-process on helper threads while it runs

    def __init__(self, module: torch.nn.Module, info: ModelInfo, precision: str = "fp32", device: str = "cuda",
                 batch: int = 8, graphs: bool = False) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: choose from {', '.join(PRECISIONS)}")
        self.device = torch.device(device)
        if graphs and self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, not {device!r}")
        self.name = f"torch-{precision}{'-graphs' if graphs else ''} (benchmark adapter)"
        self.info, self.precision, self.dtype = info, precision, PRECISIONS[precision]
        self.default_batch = batch
        self.max_batch: int | None = batch if graphs else None
        self.module = module.to(self.device).eval()
        self._lock = threading.Lock()
        self._graph = self._capture(batch) if graphs else None

    def _forward(self, tiles: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch.autocast(self.device.type, dtype=self.dtype, enabled=self.precision != "fp32",
                                             cache_enabled=False):
            return self.module(tiles).float()

    def _capture(self, batch: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        """A CUDA graph of one full batch, with its static input and output tensors."""
        tile = self.info.tile
        static_in = torch.zeros((batch, 1, tile, tile), dtype=torch.uint8, device=self.device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                self._forward(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._forward(static_in)
        return graph, static_in, static_out

    def run(self, tiles: np.ndarray) -> np.ndarray:
        """Distance maps (B, 1, T, T) float32 for uint8 tiles (B, 1, T, T)."""
        count = len(tiles)
        if self.max_batch is not None and count > self.max_batch:
            raise ValueError(f"{count} tiles in one call, more than the captured batch of {self.max_batch}")
        batch = torch.from_numpy(np.ascontiguousarray(tiles, dtype=np.uint8))
        with self._lock:
            if self._graph is None:
                return self._forward(batch.to(self.device)).cpu().numpy()
            graph, static_in, static_out = self._graph
            static_in[:count].copy_(batch)
            graph.replay()
            return static_out[:count].cpu().numpy()
