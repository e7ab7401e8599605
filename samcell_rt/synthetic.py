"""Synthetic cells and a tiny contract-following ONNX model, for tests, benchmarks and demos.

The "blob" model is not a cell segmenter: it blurs the tile and squashes it through a sigmoid, so
bright round objects on a dark background become peaked maps that look like SAMCell's distance
maps. It exercises every runtime stage with a model of known behaviour in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .runtime.contract import INPUT_NAME, OUTPUT_NAME, PREPROCESS, PROPS


def _metadata(tile: int, props: dict[str, str] | None) -> dict[str, str]:
    metadata = {
        PROPS["name"]: "blob-test", PROPS["version"]: "0", PROPS["tile"]: str(tile),
        PROPS["peak_threshold"]: "0.47", PROPS["fill_threshold"]: "0.09",
        PROPS["source_sha256"]: "0" * 64, PROPS["preprocess"]: PREPROCESS,
    }
    metadata.update(props or {})
    return {k: v for k, v in metadata.items() if v is not None}


def _save(path: str | Path, nodes: list, inits: list, tile: int, props: dict[str, str] | None, name: str) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", 1, tile, tile])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1, tile, tile])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, _metadata(tile, props))
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, path)
    return path


def broken_model(path: str | Path, value: float, crop: int = 0, tile: int = 256) -> Path:
    """A contract-shaped model that misbehaves, for tests of the output checks: every output pixel is
    `value` (NaN, 2.0, ...), and with `crop` > 0 the maps come back `crop` rows short."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Cast", [INPUT_NAME], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["f", "zero"], ["z"]),
             helper.make_node("Add", ["z", "value"], ["full"]),
             helper.make_node("Slice", ["full", "starts", "ends", "axes"], [OUTPUT_NAME])]
    inits = [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor("value", TensorProto.FLOAT, [], [value]),
             helper.make_tensor("starts", TensorProto.INT64, [1], [crop]),
             helper.make_tensor("ends", TensorProto.INT64, [1], [tile]),
             helper.make_tensor("axes", TensorProto.INT64, [1], [2])]
    return _save(path, nodes, inits, tile, None, "broken")


def blob_model(path: str | Path, tile: int = 256, sigma: float = 4.0, gain: float = 8.0, centre: float = 0.75,
               props: dict[str, str] | None = None) -> Path:
    """Write the blob model: sigmoid(gain * (gaussian_blur(tile / 255) - centre))."""
    from onnx import TensorProto, helper

    radius = int(3 * sigma)
    axis = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel = np.outer(axis, axis)
    kernel = (kernel / kernel.sum()).astype(np.float32)[None, None]
    nodes = [
        helper.make_node("Cast", [INPUT_NAME], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["f", "inv255"], ["x"]),
        helper.make_node("Conv", ["x", "kernel"], ["blur"], pads=[radius] * 4),
        helper.make_node("Sub", ["blur", "centre"], ["shifted"]),
        helper.make_node("Mul", ["shifted", "gain"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], [OUTPUT_NAME]),
    ]
    inits = [
        helper.make_tensor("inv255", TensorProto.FLOAT, [], [1 / 255]),
        helper.make_tensor("kernel", TensorProto.FLOAT, kernel.shape, kernel.ravel().tolist()),
        helper.make_tensor("centre", TensorProto.FLOAT, [], [centre]),
        helper.make_tensor("gain", TensorProto.FLOAT, [], [gain]),
    ]
    return _save(path, nodes, inits, tile, props, "blob")


def synthetic_cells(shape: tuple[int, int] = (512, 512), count: int = 20, radius: int = 12, gap: int = 8,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A float image in [0, 1] with `count` bright discs on a dim noisy background, and their labels.

    Discs are placed at random, at least `gap` pixels apart; fewer are placed if they do not fit.
    """
    rng = np.random.default_rng(seed)
    height, width = shape
    labels = np.zeros(shape, dtype=np.int32)
    centres: list[tuple[float, float]] = []
    yy, xx = np.mgrid[:height, :width]
    for _ in range(count * 200):
        if len(centres) == count:
            break
        cy, cx = rng.uniform(radius, height - radius - 1), rng.uniform(radius, width - radius - 1)
        if all((cy - y) ** 2 + (cx - x) ** 2 >= (2 * radius + gap) ** 2 for y, x in centres):
            centres.append((cy, cx))
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = len(centres)
    image = 0.1 + 0.02 * rng.standard_normal(shape) + 0.7 * (labels > 0)
    return np.clip(image, 0, 1).astype(np.float32), labels


def tessellation(size: int, spacing: int, seed: int) -> np.ndarray:
    """int32 labels of a Voronoi tessellation of `size` x `size` with about one cell per `spacing`^2 pixels:
    cells that tile the whole field, as in an epithelium."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    count = int(size * size / spacing**2)
    seeds = np.zeros((size, size), np.int32)
    seeds[rng.integers(0, size, count), rng.integers(0, size, count)] = np.arange(1, count + 1)
    _, (rows, cols) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    labels = seeds[rows, cols]
    _, consecutive = np.unique(labels, return_inverse=True)  # seeds drawn twice on one pixel leave gaps
    return (consecutive.reshape(labels.shape) + 1).astype(np.int32)


def as_dtype(image: np.ndarray, dtype: str) -> np.ndarray:
    """A [0, 1] float image in another storage type: uint8, uint16 (using values far above 255) or float32."""
    if dtype == "uint8":
        return np.rint(image * 255).astype(np.uint8)
    if dtype == "uint16":
        return np.rint(1000 + image * 50000).astype(np.uint16)
    return image.astype(np.float32)


def matched_iou(truth: np.ndarray, labels: np.ndarray) -> list[float]:
    """For each true object, the IoU of the predicted label overlapping it most (0 if none)."""
    scores = []
    for t in range(1, int(truth.max()) + 1):
        inside = truth == t
        if not inside.any():
            continue
        ids, counts = np.unique(labels[inside], return_counts=True)
        keep = ids > 0
        if not keep.any():
            scores.append(0.0)
            continue
        best = ids[keep][np.argmax(counts[keep])]
        pred = labels == best
        scores.append(float((inside & pred).sum() / (inside | pred).sum()))
    return scores


def write_demo(folder: str | Path) -> None:
    """Write a synthetic 16-bit plate image and the blob model into `folder` (for the README demo)."""
    import tifffile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    image, _ = synthetic_cells((1040, 1392), count=120, seed=0)
    tifffile.imwrite(folder / "cells.tif", as_dtype(image, "uint16"))
    blob_model(folder / "blob.onnx")


if __name__ == "__main__":
    import sys

    write_demo(sys.argv[1] if len(sys.argv) > 1 else "demo")
