"""ONNX model -> TensorRT or TensorRT-RTX engine with one batch profile, an accuracy guard and a header.

Two flavours (library calls in trt_network.py):
- `rtx`, TensorRT for RTX (extra `tensorrt-rtx`, PyPI wheels): builds ahead of time on any
  machine, GPU or not, for RTX-class GPUs (the target compute capabilities). It is strongly typed,
  so an fp16 engine is built from an fp16 graph: the model itself when it was exported as fp16,
  else derived from the checkpoint when one is given, else converted from the fp32 graph and
  checked in onnxruntime against it (fp16.py).
- `tensorrt`, the full TensorRT (datacenter GPUs; NVIDIA's index): builds on the GPU it is for,
  from the fp32 graph with precision flags; an fp16 engine over tolerance is rebuilt with
  LayerNorm / Softmax / sigmoid pinned to fp32 (both errors reported).
The guard: where a GPU can run the new engine, it runs the export's verification tiles and is
compared with the ONNX model in onnxruntime; an engine over tolerance is never written. Where none
can (TensorRT-RTX on a machine without an RTX-class GPU), the graph it was built from is what was
verified, and the header and the report say the engine itself is unverified.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import EngineUnavailableError, InputError
from ..runtime.atomic import check_output_file
from ..runtime.contract import META_KEYS, file_sha256, read_props
from ..runtime.engines import tensorrt as trt_engine
from ..runtime.engines.table import Flavour, Precision
from ..runtime.engines.trt_header import (
    RUNTIMES,
    EngineHeader,
    EngineMismatchError,
    cached_engine_path,
    engines_dir,
    read_header,
    write_engine,
)
from . import TOLERANCE
from .fp16 import Fp16Graph, fp16_graph_for
from .onnx import graph_maps, verification_tiles
from .trt_network import BuildError, Profile, build_full, build_rtx, calibrator

# Measured with TensorRT-RTX 1.7.1: "Cannot compile ... for Turing (SM75): FP32 GEMM is not supported".
RTX_NO_FP32 = ("7.5",)

__all__ = ["BuildError", "BuildReport", "BuildSettings", "RUNTIMES", "build_engine", "choose_flavour", "describe_build"]


@dataclass
class BuildReport:
    """What build_engine did: the file, its header, the errors measured, and how long it took."""

    path: Path
    header: EngineHeader
    errors: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    cached: bool = False  # an identical engine was already in the cache: nothing was built
    graph: Fp16Graph | None = None

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def choose_flavour(runtime: str | None) -> str:
    """The flavour to build with: the one asked for, else the installed one (full TensorRT on a GPU when both are)."""
    if runtime is not None:
        if runtime not in RUNTIMES:
            raise InputError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
        trt_engine.import_library(RUNTIMES[runtime])  # raises with the install command
        return RUNTIMES[runtime]
    installed = trt_engine.installed_flavours()
    if not installed:
        raise EngineUnavailableError("build-engine needs TensorRT-RTX (pip install 'samcell-rt[tensorrt-rtx]': builds on "
                                     "any machine, for RTX GPUs) or the full TensorRT (extra 'tensorrt', on the target GPU)")
    if len(installed) == 1:
        return next(iter(installed))
    return Flavour.TENSORRT if trt_engine.available() else Flavour.RTX


@dataclass(frozen=True)
class BuildSettings:
    """How to build an engine: precision, batch profile, library and targets, and the builders' inputs."""

    precision: Precision = Precision.FP16
    max_batch: int = 32
    opt_batch: int = 8  # the batch the engine is tuned for (at most max_batch)
    runtime: str | None = None  # a key of RUNTIMES; None: the installed flavour (choose_flavour)
    compute_capabilities: tuple[str, ...] = ()  # TensorRT-RTX targets; none: every one it supports
    checkpoint: str | Path | None = None  # TensorRT-RTX fp16: derive the fp16 graph from the checkpoint
    config: object = None  # ... with this SAM configuration when the checkpoint carries none
    workspace_gb: float = 8.0  # full TensorRT: builder memory
    calib_dir: str | Path | None = None  # full TensorRT int8: calibration images

    def profile(self, tile: int) -> Profile:
        return Profile(1, min(self.opt_batch, self.max_batch), self.max_batch, tile)


def build_engine(model: str | Path, out: str | Path | None = None, settings: BuildSettings = BuildSettings(),
                 log: Callable[[str], None] = lambda line: None) -> BuildReport:
    """Build, guard and write an engine for the ONNX `model` (names are resolved by the caller); default
    destination: the engine cache.

    An identical engine already in the cache (same flavour, version, targets, precision, profile
    and source sha256) is reused, not rebuilt.
    """
    if settings.precision not in TOLERANCE:
        raise InputError(f"unknown precision {settings.precision!r}; choose from {', '.join(TOLERANCE)}")
    onnx_path = Path(model)
    if out is not None:
        check_output_file(Path(out))  # before a build that can take minutes
    props = read_props(onnx_path)
    flavour = choose_flavour(settings.runtime)
    trt = trt_engine.import_library(flavour)
    header = _header(flavour, trt, settings, model, props)
    if out is None and (hit := _cache_hit(header)) is not None:
        log(f"engine already built: {hit.path}")
        return hit
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="samcell-engine-") as tmp:
        build = _build_rtx if flavour == Flavour.RTX else _build_full
        report = build(trt, onnx_path, header, Path(tmp), log, settings)
    path = Path(out) if out else cached_engine_path(report.header)
    write_engine(path, report.header, report.engine)
    return BuildReport(path, report.header, report.errors, time.perf_counter() - start, graph=report.graph)


@dataclass
class _Built:
    engine: bytes
    header: EngineHeader
    errors: dict[str, float]
    graph: Fp16Graph | None = None


def describe_build(report: BuildReport) -> str:
    """One paragraph for the user: what was written, for what, and what was verified."""
    h = report.header
    done = "reused cached engine" if report.cached else f"wrote engine in {report.seconds:.1f} s"
    errors = "".join(f"; max abs error {k}: {v:.3g}" for k, v in report.errors.items())
    return (f"{done}: {report.path} ({report.size / 1e6:.1f} MB), {h.library} {h.version}, {h.precision}, "
            f"batch {h.min_batch}..{h.max_batch} (opt {h.opt_batch}), for {h.targets()}{errors}. {h.verification}")


def _header(flavour: str, trt, settings: BuildSettings, model: str | Path, props: dict[str, str]) -> EngineHeader:
    """The new engine's header before the build; `model` as the caller named it (the header's source)."""
    profile = settings.profile(int(props.get(META_KEYS["tile"], 256)))
    precision = settings.precision
    if flavour == Flavour.RTX:
        gpu, targets = "", _rtx_targets(trt, settings.compute_capabilities, precision)
    else:
        try:
            gpu, capability = trt_engine.device_facts()
        except EngineUnavailableError as exc:
            raise EngineUnavailableError(f"the full TensorRT builds on the GPU the engine is for, and none is usable here "
                                         f"({exc}); TensorRT-RTX builds without one: --runtime rtx") from exc
        targets = (capability,)
    return EngineHeader(flavour=flavour, version=str(trt.__version__), gpu_name=gpu, compute_capabilities=targets,
                        precision=precision, min_batch=profile.min_batch, opt_batch=profile.opt_batch,
                        max_batch=profile.max_batch, tile=profile.tile, onnx_sha256=file_sha256(Path(model)), source=str(model),
                        model_props=props)


def _rtx_targets(trt, asked: tuple[str, ...], precision: str) -> tuple[str, ...]:
    """The asked compute capabilities ("8.9"), checked; none asked: all TensorRT-RTX can build this precision for."""
    supported = trt_engine.rtx_capabilities(trt)
    if precision == Precision.FP32:
        supported = tuple(c for c in supported if c not in RTX_NO_FP32)
    unknown = [c for c in asked if c not in supported]
    if unknown:
        raise InputError(f"TensorRT-RTX {trt.__version__} cannot build {precision} engines for compute capability "
                         f"{', '.join(unknown)}; it can for {', '.join(supported)}")
    return tuple(dict.fromkeys(asked)) or supported


def _cache_hit(header: EngineHeader) -> BuildReport | None:
    path = cached_engine_path(header)
    try:
        found, _ = read_header(path)
    except (OSError, EngineMismatchError):
        return None
    if found.cache_key() != header.cache_key() or found.opt_batch != header.opt_batch:
        return None
    return BuildReport(path, found, cached=True)


def _build_rtx(trt, onnx_path: Path, header: EngineHeader, tmp: Path, log, settings: BuildSettings) -> _Built:
    graph, source_graph, errors = None, onnx_path, {}
    given = header.model_props.get(META_KEYS["precision"], Precision.FP32)
    if header.precision == Precision.INT8:
        raise BuildError("TensorRT-RTX engines are built here in fp32 or fp16; int8 needs the full TensorRT "
                         "(--runtime tensorrt --precision int8 --calib DIR)")
    if header.precision == Precision.FP32 and given != Precision.FP32:
        raise BuildError(f"{onnx_path} is an {given} graph; an fp32 TensorRT-RTX engine needs the fp32 model")
    if header.precision == Precision.FP16:
        log(f"fp16 graph for {onnx_path.name}: "
            + ("from the checkpoint" if settings.checkpoint else "converting and checking"))
        graph = fp16_graph_for(onnx_path, tmp, settings.checkpoint, settings.config)
        source_graph = graph.path
        errors["fp16-graph-vs-fp32"] = graph.max_abs_error
        log(f"fp16 graph ({graph.source}): max abs error {graph.max_abs_error:.3g} (tolerance {TOLERANCE[Precision.FP16]})")
    log(f"building a TensorRT-RTX {trt.__version__} {header.precision} engine for {header.targets()}, "
        f"batch {header.min_batch}..{header.max_batch}")
    profile = Profile(header.min_batch, header.opt_batch, header.max_batch, header.tile)
    engine = build_rtx(trt, source_graph, profile, header.compute_capabilities)
    header = replace(header, model_props=read_props(source_graph))
    return _Built(engine, _verified(header, engine, onnx_path, tmp, errors, graph), errors, graph)


def _verified(header: EngineHeader, engine: bytes, onnx_path: Path, tmp: Path, errors: dict, graph) -> EngineHeader:
    """The header with what was verified: the engine on this GPU when it is a target, else the graph."""
    gpu_ok = trt_engine.available() and trt_engine.device_facts()[1] in header.compute_capabilities
    if gpu_ok:
        error = _engine_error(onnx_path, header, engine, tmp)
        errors["engine"] = error
        if not error <= TOLERANCE[header.precision]:
            raise BuildError(f"{header.precision} TensorRT-RTX engine for {onnx_path} differs from the ONNX model by "
                             f"{error:.3g} on this GPU (tolerance {TOLERANCE[header.precision]}); not written")
        return replace(header, max_abs_error=error, verification=f"engine checked on {trt_engine.device_facts()[0]}")
    if graph is not None:
        what = (f"engine unverified (no target GPU here); the fp16 graph it was built from ({graph.source}) "
                f"is within {graph.max_abs_error:.3g} of the fp32 graph in onnxruntime")
    else:
        exported = header.model_props.get(META_KEYS["verified_max_abs_error"], "not recorded")
        what = f"engine unverified (no target GPU here); built from the model as exported (its check vs torch: {exported})"
    return replace(header, verification=what)


def _engine_error(onnx_path: Path, header: EngineHeader, engine: bytes, tmp: Path) -> float:
    """Max abs error of the engine on this GPU against the ONNX model in onnxruntime."""
    tiles = verification_tiles(header.tile)
    expected = graph_maps(onnx_path, tiles)
    candidate = tmp / f"candidate-{len(list(tmp.glob('candidate-*')))}.engine"
    write_engine(candidate, header, engine)
    got = trt_engine.TensorRTEngine(candidate).run(tiles)
    return float(np.abs(got.astype(np.float64) - expected).max())


def _build_full(trt, onnx_path: Path, header: EngineHeader, tmp: Path, log, settings: BuildSettings) -> _Built:
    profile = Profile(header.min_batch, header.opt_batch, header.max_batch, header.tile)
    calib = calibrator(settings.calib_dir, header.tile, header.max_batch) if header.precision == Precision.INT8 else None
    timing_cache = engines_dir() / f"timing-{header.cache_key()}.cache"
    errors: dict[str, float] = {}
    for attempt, pin in (("default", False), ("fp32-pinned", True)):
        log(f"building a TensorRT {trt.__version__} {header.precision} engine for {header.targets()} ({attempt})")
        engine, pinned = build_full(onnx_path, header.precision, profile, settings.workspace_gb, timing_cache, calib, pin)
        candidate = replace(header, fp32_layers=pinned)
        errors[attempt] = _engine_error(onnx_path, candidate, engine, tmp)
        if errors[attempt] <= TOLERANCE[header.precision]:
            checked = f"engine checked on {header.gpu_name}"
            return _Built(engine, replace(candidate, max_abs_error=errors[attempt], verification=checked), errors)
        if header.precision == Precision.FP32:
            break
    raise BuildError(f"{header.precision} engine for {onnx_path} fails the accuracy guard: max abs error "
                     + ", ".join(f"{k} {v:.3g}" for k, v in errors.items())
                     + f" (tolerance {TOLERANCE[header.precision]}); not written")
