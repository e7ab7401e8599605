"""The accuracy guard of bf16 on the CPU, judged by the cells: a model runs in bf16 only where, on this
processor, the labels it gives in bf16 agree with the labels it gives in fp32.

bf16 keeps 8 significant bits, so how far a model's maps move depends on the model and on the
processor's kernels (AMX and AVX512-BF16 round differently). Users see labels, not maps, and a bound
on the largest map difference refused a model (samcell-lite on a Zen 5: 0.039-0.052) whose cells
stayed the same (OP_CSB -0.003). So, like accuracy-controlled quantisation, the guard bounds the drop
of the task's own metric: the guard images go through the whole runtime (tiles, blend, the model's
thresholds, watershed) in fp32 and in bf16, and bf16 passes when, scored against the fp32 labels, CTC
SEG >= MIN_SEG, DET >= MIN_DET, the cell count moves by at most MAX_COUNT_CHANGE, and the maps' max
abs difference stays under MAX_MAP_DIFFERENCE (a sanity bound that catches a broken compile, not
rounding). The check runs once per (model sha256, CPU, OpenVINO version); its verdict, with every
number and the time it took, is kept in the user cache, so later starts cost nothing. Verdicts under
another criterion, or damaged, are measured again. The verdict is said once per process where it was
measured or where it refuses bf16 (the engine then runs fp32).
"""

from __future__ import annotations

import json
import math
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ...cache import cache_dir
from ...errors import SamcellWarning
from ..atomic import write_text_atomic
from ..contract import ModelInfo, check_output
from ..cpu import cpu_model, reported_flags
from ..matching import Counts, match_counts

MIN_SEG, MIN_DET = 0.95, 0.97  # CTC scores of the bf16 labels against the fp32 labels
MAX_COUNT_CHANGE = 0.03  # |cells in bf16 - cells in fp32| / cells in fp32
MAX_MAP_DIFFERENCE = 0.15  # max abs distance-map difference: the thresholds sit 0.05..0.5 apart
CRITERION = "labels-v1"  # stored with each verdict; one under any other criterion is measured again
# the shipped demo frame (package data every install has; the runtime may not import package_files)
DEMO_FRAME = Path(__file__).parents[2] / "data" / "ecoli-phase-t17.tif"
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Agreement:
    """The bf16 labels and maps of the guard images measured against the fp32 ones."""

    seg: float
    det: float
    cells_fp32: int
    cells_bf16: int
    max_map_difference: float

    @property
    def count_change(self) -> float:
        return abs(self.cells_bf16 - self.cells_fp32) / max(self.cells_fp32, 1)

    def failures(self) -> list[str]:
        """What falls short of the criterion ([] when bf16 passes)."""
        checks = [(self.seg >= MIN_SEG, f"SEG {self.seg:.3f} < {MIN_SEG}"),
                  (self.det >= MIN_DET, f"DET {self.det:.3f} < {MIN_DET}"),
                  (self.count_change <= MAX_COUNT_CHANGE, f"cell count changes {self.count_change:.1%} > "
                                                           f"{MAX_COUNT_CHANGE:.0%}"),
                  (self.max_map_difference < MAX_MAP_DIFFERENCE, f"max map difference {self.max_map_difference:.3g} "
                                                                 f">= {MAX_MAP_DIFFERENCE}")]
        return [text for ok, text in checks if not ok]

    def describe(self) -> str:
        return (f"bf16 labels against fp32: SEG {self.seg:.3f}, DET {self.det:.3f}, cells {self.cells_fp32} -> "
                f"{self.cells_bf16}, max map difference {self.max_map_difference:.3g}")


@dataclass(frozen=True)
class Verdict(Agreement):
    """The guard's decision for one model on one CPU, with every number and the seconds it took."""

    passed: bool = False
    seconds: float = 0.0
    criterion: str = CRITERION

    @classmethod
    def judged(cls, found: Agreement, seconds: float) -> Verdict:
        return cls(**asdict(found), passed=not found.failures(), seconds=seconds)

    @classmethod
    def from_record(cls, record: object) -> Verdict | None:
        """A stored verdict, or None for one that is damaged or made under another criterion."""
        names = [f.name for f in fields(cls)]
        if not isinstance(record, dict) or sorted(record) != sorted(names) or record["criterion"] != CRITERION:
            return None
        numbers = [record[n] for n in names if n not in ("passed", "criterion")]
        if not isinstance(record["passed"], bool) or not all(_finite(v) for v in numbers):
            return None
        found = cls(**record)
        return found if found.passed == (not found.failures()) else None  # a record that contradicts its numbers

    def describe(self) -> str:
        return f"{super().describe()}; {'; '.join(self.failures()) or 'all within bounds'}"


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def segmented(run: Callable[[np.ndarray], np.ndarray], info: ModelInfo, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, distance map) of one image through the runtime's own steps at the model's scale: range
    scaling to uint8, tiles, the contrast step, `run` (an engine's, one tile per call), the output check,
    the blend, the model's thresholds and the watershed. Not the Segmenter: it opens engines, so an
    engine module may not import it (tests/test_layers.py forbids the loop)."""
    from ..postprocess import labels_from_distance
    from ..preprocess import enhance_tiles, to_uint8
    from ..tiling import blend, extract_tiles, tile_grid

    image_u8 = to_uint8(image)
    grid = tile_grid(*image_u8.shape, tile=info.tile)
    tiles = enhance_tiles(extract_tiles(image_u8, grid))[:, None]
    maps = np.concatenate([run(tile[None]) for tile in tiles])
    check_output(info.path, tiles, maps)
    distance = blend(maps[:, 0], grid)
    return labels_from_distance(distance, info.peak_threshold, info.fill_threshold), distance


def agreement(fp32: Sequence, bf16: Sequence) -> Agreement:
    """Compare two runs of the guard images: each a sequence of (labels, distance map) per image."""
    counts = sum((match_counts(ref[0], got[0]) for ref, got in zip(fp32, bf16, strict=True)), Counts())
    difference = max(float(np.abs(ref[1] - got[1]).max()) for ref, got in zip(fp32, bf16))
    return Agreement(counts.seg, counts.det, counts.n_ref, counts.n_pred, difference)


_SEEN: dict[str, Verdict] = {}  # verdicts this process has read or made (and said, when needed)


def verdicts_path() -> Path:
    """The user-cache file of verdicts, one per model sha256, CPU and OpenVINO version."""
    return cache_dir() / "openvino" / "bf16-guard.json"


def guard_key(model_sha256: str, library_version: str) -> str:
    """What a verdict depends on: the weights, the processor (model name and precision flags), the library."""
    return f"{model_sha256}|{cpu_model()}|{','.join(reported_flags())}|openvino {library_version}"


def cell_tiles(tile: int, seed: int = 0) -> list[np.ndarray]:
    """Two (T, T) uint8 images of bright round cells on a dark, uneven background (drawn here because
    the runtime may not import the synthetic-image helpers)."""
    import cv2

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(2):
        canvas = rng.normal(40, 8, (tile, tile)).astype(np.float32)
        for _ in range(8):
            centre = tuple(int(c) for c in rng.integers(tile // 10, tile - tile // 10, 2))
            cv2.circle(canvas, centre, int(rng.integers(tile // 32, tile // 12)), float(rng.uniform(150, 230)), -1)
        images.append(np.clip(cv2.GaussianBlur(canvas, (0, 0), 1.5), 0, 255).astype(np.uint8))
    return images


def guard_images(tile: int) -> list[np.ndarray]:
    """Real cells first (the shipped demo frame: phase-contrast E. coli), then the synthetic cell tiles."""
    from ..io import read_image

    return [read_image(DEMO_FRAME).frames[0], *cell_tiles(tile)]


def _load() -> dict:
    try:
        records = json.loads(verdicts_path().read_text())
    except (OSError, ValueError):  # none yet, a folder, unreadable or not JSON: measure again
        return {}
    return records if isinstance(records, dict) else {}


def _store(key: str, found: Verdict) -> None:
    """Add a verdict to the user cache; where the cache cannot be written, it holds for this process only."""
    records = _load()
    records[key] = asdict(found)
    try:
        verdicts_path().parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(verdicts_path(), json.dumps(records, indent=1))
    except OSError:
        pass


def verdict(key: str, model: str, measure: Callable[[], Agreement]) -> Verdict:
    """The cached verdict for `key`, or `measure()` judged, timed and stored. Said in one line when it
    was measured now (the time it took) or when it refuses bf16; once per process."""
    with _LOCK:
        if key in _SEEN:
            return _SEEN[key]
        found = Verdict.from_record(_load().get(key))
        measured = found is None
        if measured:
            start = time.perf_counter()
            found = Verdict.judged(measure(), time.perf_counter() - start)
            _store(key, found)
        _SEEN[key] = found
    if measured or not found.passed:
        when = "measured now, once for this model and CPU," if measured else "measured earlier"
        warnings.warn(f"bf16 accuracy guard for {model} on this CPU: {'passes' if found.passed else 'fails'} "
                      f"({found.describe()}; {when} in {found.seconds:.1f} s)"
                      f"{'' if found.passed else ': running fp32'}", SamcellWarning, stacklevel=3)
    return found
