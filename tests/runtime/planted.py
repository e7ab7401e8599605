"""A planted model whose bf16 changes the cells, for tests of the bf16 guard."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from samcell_rt.runtime.contract import INPUT_NAME, OUTPUT_NAME, PREPROCESS, PROPS


def cell_losing_model(path: str | Path, weight: float = 1.003, tile: int = 256) -> Path:
    """sigmoid(8 * (blur(x / 255) - 0.75) + 10 * (conv1x1(x, weight) - weight * x)) for uint8 tiles x.

    In fp32 the second term is exactly 0 and bright discs become peaked maps, like the blob model. bf16
    (8 significant bits) rounds the 1x1 convolution's weight 1.003 to 1.0, so the term becomes
    -0.03 x: -6 logits on a bright cell (x = 200), and the cells vanish. `weight=1.0` writes that
    rounding into the file itself: fp32 then computes what bf16 computes (the emulated bf16 twin)."""
    import onnx
    from onnx import TensorProto, helper

    axis = np.exp(-0.5 * (np.arange(-3, 4) / 1.5) ** 2)
    kernel = (np.outer(axis, axis) / np.outer(axis, axis).sum()).astype(np.float32)[None, None]
    nodes = [
        helper.make_node("Cast", [INPUT_NAME], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["f", "inv255"], ["x"]),
        helper.make_node("Conv", ["x", "blur_kernel"], ["blur"], pads=[3] * 4),
        helper.make_node("Sub", ["blur", "centre"], ["shifted"]),
        helper.make_node("Mul", ["shifted", "gain"], ["cells"]),
        helper.make_node("Conv", ["f", "kernel"], ["conv"]),
        helper.make_node("Mul", ["f", "exact_weight"], ["exact"]),
        helper.make_node("Sub", ["conv", "exact"], ["rounding"]),
        helper.make_node("Mul", ["rounding", "push"], ["pushed"]),
        helper.make_node("Add", ["cells", "pushed"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], [OUTPUT_NAME]),
    ]
    inits = [
        helper.make_tensor("inv255", TensorProto.FLOAT, [], [1 / 255]),
        helper.make_tensor("blur_kernel", TensorProto.FLOAT, kernel.shape, kernel.ravel().tolist()),
        helper.make_tensor("centre", TensorProto.FLOAT, [], [0.75]),
        helper.make_tensor("gain", TensorProto.FLOAT, [], [8.0]),
        helper.make_tensor("kernel", TensorProto.FLOAT, [1, 1, 1, 1], [weight]),
        helper.make_tensor("exact_weight", TensorProto.FLOAT, [], [1.003]),
        helper.make_tensor("push", TensorProto.FLOAT, [], [10.0]),
    ]
    graph = helper.make_graph(
        nodes, "cell-losing",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", 1, tile, tile])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1, tile, tile])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {PROPS["name"]: "cell-losing-test", PROPS["version"]: "0", PROPS["tile"]: str(tile),
                                   PROPS["peak_threshold"]: "0.47", PROPS["fill_threshold"]: "0.09",
                                   PROPS["source_sha256"]: "0" * 64, PROPS["preprocess"]: PREPROCESS})
    onnx.checker.check_model(model)
    onnx.save(model, Path(path))
    return Path(path)
