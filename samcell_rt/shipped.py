"""Models shipped inside the package: weights stored once, complete ONNX files made in the user cache.

A shipped model NAME is, in `samcell_rt/models/`:
- `NAME.safetensors`: its parameters (SamModel names), what `train --init NAME` and `adapt` start from;
- `NAME.json`: the trainer's record beside them (model configuration, trained cell sizes);
- `NAME.graph.onnx`: its exported graph without weights, unfolded, so that every initialiser is one
  parameter: it names that parameter and the weights file instead of carrying data;
- `NAME.md`: its model card.
Everything that needs a model file (onnxruntime, OpenVINO, TensorRT builds, Dask workers) gets a
complete ONNX made once in the user cache: the graph filled from the weights, then constant-folded by
onnxruntime's basic optimisations (provider-independent rewrites with standard ONNX ops: transposes and
conv + batch-norm pairs folded into plain weights). Its name carries the weights' and the graph's
sha256, so new weights or a new graph never reuse an old file. Derived variants (int8) are made
there from the complete file on first use. Files are written atomically, each followed by a sha256
record: a reader sees a whole file or none, and a damaged file is rebuilt. Two processes making the
same file at once both succeed (the output is deterministic; the last rename wins). No torch here.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import cache_dir
from .errors import ModelError
from .runtime.atomic import atomic_path, write_text_atomic
from .runtime.contract import META_KEYS, file_sha256, model_sha256, read_props
from .runtime.cpu import int8_saturates
from .runtime.engines.table import Precision

SHIPPED_DIR = Path(__file__).parent / "models"
GRAPH_SUFFIX = ".graph.onnx"
PARAM_PREFIX = "sam."  # graph initialiser = export wrapper's attribute + SamModel's parameter name
WEIGHTS_PROP = META_KEYS["weights_sha256"]
WEIGHT_SOURCE = "samcell_weights"  # external-data key: the tensor of the weights file that fills an initialiser


@dataclass(frozen=True)
class ShippedFiles:
    """sha256 of a shipped model's two files, recorded when they were made (see the model card)."""

    weights_sha256: str
    graph_sha256: str


SHIPPED = {
    "samcell-lite": ShippedFiles("c9902167dc6107f9ad5374138aceedadbc5316adc5cdf31ed9c6a5d6e33d1cc4",
                                 "9019830e9b75b8181462b25145471653144d003e8e34280d3f3af9763e9e65af"),
}
# derived variants: name -> (shipped model, derivation); made from the complete file on first use
VARIANTS = {"samcell-lite-int8": ("samcell-lite", Precision.INT8)}
# int8 quantises the matrix products only. Dynamic ConvInteger on CPU was both slower than fp32 and
# far less accurate on SAMCell-Lite's convolutions (0.84 vs 0.35 s per tile, max error 0.29 vs 0.05).
# Weights get one scale per output channel: with one per tensor, SAMCell-Lite version 3 missed the
# int8 tolerance (max error 0.073 on the verification tiles, against 0.038 per channel).
INT8_OPS = ("MatMul", "Gemm")
REDUCED_RANGE = "rr"  # name tag of an int8 file made with 7-bit weights (for CPUs without VNNI)


def shipped_names() -> list[str]:
    """Every model name the package can serve offline: shipped models whose files are present, and their variants."""
    present = [n for n in SHIPPED if weights_file(n).exists() and graph_file(n).exists()]
    return present + [v for v, (base, _) in VARIANTS.items() if base in present]


def weights_file(name: str) -> Path:
    return SHIPPED_DIR / f"{name}.safetensors"


def graph_file(name: str) -> Path:
    return SHIPPED_DIR / f"{name}{GRAPH_SUFFIX}"


def card_file(name: str) -> Path:
    """The model card of a shipped model or of the model a variant derives from."""
    return SHIPPED_DIR / f"{VARIANTS.get(name, (name,))[0]}.md"


def verified_weights(name: str) -> Path:
    """The weights file of a shipped model, after checking its sha256 against the recorded one."""
    path = weights_file(name)
    _check(path, SHIPPED[name].weights_sha256, "weights")
    return path


def _check(path: Path, expected: str, what: str) -> str:
    if not path.exists():
        raise ModelError(path, f"the shipped {what} file is missing from this installation; reinstall samcell-rt")
    digest = file_sha256(path)
    if digest != expected:
        raise ModelError(path, f"sha256 {digest} differs from the {expected} recorded for the shipped {what}: "
                               "the file was changed or damaged; reinstall samcell-rt (or restore the file)")
    return digest


def complete_path(name: str) -> Path:
    """Where the complete ONNX of a shipped model or variant lives in the user cache (it may not exist yet)."""
    base, variant = VARIANTS.get(name, (name, None))
    files = SHIPPED[base]
    key = f"{files.weights_sha256[:16]}-{files.graph_sha256[:8]}"
    if variant == Precision.INT8 and int8_saturates():
        variant += "-" + REDUCED_RANGE  # made for this kind of CPU: a home folder shared with a VNNI machine keeps both
    return cache_dir() / "shipped" / f"{base}{'-' + variant if variant else ''}-{key}.onnx"


def materialise(name: str) -> Path:
    """The complete ONNX file of a shipped model or variant: made on first use, reused after."""
    if name not in SHIPPED and name not in VARIANTS:
        raise ModelError(name, f"not a shipped model (shipped: {', '.join([*SHIPPED, *VARIANTS])})")
    out = complete_path(name)
    if _intact(out):
        return out
    try:
        _make(name, out)
    except OSError as exc:
        raise ModelError(out, f"cannot be written ({exc}); point $SAMCELL_RT_HOME at a writable folder") from exc
    return out


def _make(name: str, out: Path) -> None:
    """Make the complete file (fill + fold) or a variant (from the complete file) and move it to `out`."""
    with tempfile.TemporaryDirectory(prefix="samcell-materialise-") as tmp:
        made = Path(tmp) / "model.onnx"
        if name in VARIANTS:
            base, variant = VARIANTS[name]
            source = materialise(base)
            quantize_int8(source, made)  # the one derivation so far
            # the base's verified error is the fp32 graph's against torch: not this file's
            props = {k: v for k, v in read_props(source).items() if k != META_KEYS["verified_max_abs_error"]}
            props |= {META_KEYS["name"]: name, META_KEYS["precision"]: variant}
        else:
            graph = graph_file(name)
            _check(graph, SHIPPED[name].graph_sha256, "graph")
            fold_constants(fill_graph(graph, verified_weights(name)), made)
            props = read_props(graph) | {WEIGHTS_PROP: SHIPPED[name].weights_sha256}
        _finish(made, out, props)


def fill_graph(graph: Path, weights: Path):
    """The weight-free graph with each initialiser filled from its tensor in the weights file (fp32)."""
    import onnx
    from onnx import TensorProto, helper
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    model = onnx.load(str(graph), load_external_data=False)
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise ModelError(weights, f"cannot be read as safetensors weights ({exc})") from exc
    for init in model.graph.initializer:
        source = {e.key: e.value for e in init.external_data}.get(WEIGHT_SOURCE)
        if source is None:
            continue
        if source not in tensors:
            raise ModelError(weights, f"has no tensor {source!r}, which {graph.name} needs")
        array = tensors[source]
        if tuple(array.shape) != tuple(init.dims):
            raise ModelError(weights, f"tensor {source!r} has shape {tuple(array.shape)}; {graph.name} needs {tuple(init.dims)}")
        dtype = helper.tensor_dtype_to_np_dtype(init.data_type)
        del init.external_data[:]
        init.data_location = TensorProto.DEFAULT
        init.raw_data = np.ascontiguousarray(array.astype(dtype)).tobytes()
    return model


def fold_constants(model, out: Path) -> None:
    """Write `model` after onnxruntime's basic, provider-independent optimisations (constant folding)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(out)
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def quantize_int8(source: Path, out: Path) -> None:
    """onnxruntime dynamic int8 quantisation of the matrix products, one scale per output channel, with
    7-bit weights where the CPU's int8 products would otherwise saturate (see `int8_saturates`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _without_preprocess_advice():
        quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=list(INT8_OPS),
                         per_channel=True, reduce_range=int8_saturates())


@contextmanager
def _without_preprocess_advice():
    """Drop onnxruntime's root-logger advice to pre-process (it is for static quantisation, not for a
    user's first run) while quantising; every other record, and every logger's level, is left alone."""
    root = logging.getLogger()

    def keep(record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()

    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _finish(made: Path, out: Path, props: dict[str, str]) -> None:
    """Give `made` these metadata and only the opset imports its nodes use (onnxruntime lists all its
    own), and move it to `out` atomically; its sha256 record follows, so an interrupted write is never
    taken for a whole file."""
    import onnx
    from onnx import helper

    model = onnx.load(str(made))
    used = {node.domain for node in model.graph.node} | {""}
    kept = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    del model.metadata_props[:]
    helper.set_model_props(model, props)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    write_text_atomic(_record(out), model_sha256(out) + "\n")  # cached: the engine about to open it reuses it


def _record(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _intact(path: Path) -> bool:
    """The file exists and matches the sha256 recorded when it was written."""
    record = _record(path)
    try:
        if not (path.is_file() and record.is_file()):
            _clear(path)  # a folder in either place would block the rebuilt file
            _clear(record)
            return False
        return record.read_text(encoding="ascii").strip() == model_sha256(path)  # the engine reuses this hash
    except (OSError, UnicodeDecodeError):  # unreadable or not text: rebuilt like any damaged record
        return False


def _clear(path: Path) -> None:
    """Remove whatever non-file sits at `path` (a folder left by a user or another tool)."""
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
