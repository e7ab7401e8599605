"""Segmentation scores the paper reports: Cell Tracking Challenge SEG and DET, OP_CSB, AP@IoU.

Definitions (Matula et al. 2015, as implemented by the CTC's tools and py-ctcmetrics):
- a reference object R is matched by a predicted object S when |R ∩ S| > 0.5 |R| (so each R has
  at most one match);
- SEG = sum over reference objects of IoU(R, matched S) (0 when unmatched) / number of references;
- DET = 1 - min(AOGM_D, AOGM_D0) / AOGM_D0 with AOGM_D = 5 NS + 10 FN + 1 FP, AOGM_D0 = 10 × number
  of references; NS = splits needed (a prediction matching k references costs k - 1), FN =
  unmatched references, FP = predictions matching no reference;
- OP_CSB = (SEG + DET) / 2.
Over several images the sums run over all objects (as CTC does over frames). With no reference
objects at all, SEG and DET are 1 when nothing was predicted and 0 otherwise (CTC leaves it
undefined). AP at an IoU threshold is TP / (TP + FP + FN) after one-to-one matching that
maximises total IoU (the StarDist/Cellpose convention). Count error = predicted - reference.
No torch here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .runtime.matching import Counts, counts_of, overlaps


@dataclass
class PairScore:
    """Scores of one prediction against its reference; sums kept so images can be pooled."""

    name: str
    n_ref: int
    n_pred: int
    seg_sum: float
    ns: int
    fn: int
    fp: int
    tp50: int
    tp75: int

    @property
    def counts(self) -> Counts:
        """SEG and DET's counts, computed as the runtime's bf16 guard computes them (one definition)."""
        return Counts(self.n_ref, self.n_pred, self.seg_sum, self.ns, self.fn, self.fp)

    @property
    def seg(self) -> float:
        return self.counts.seg

    @property
    def det(self) -> float:
        return self.counts.det

    def as_dict(self) -> dict:
        return {**asdict(self), "SEG": self.seg, "DET": self.det, "OP_CSB": (self.seg + self.det) / 2,
                "AP50": _ap(self.tp50, self.n_ref, self.n_pred), "AP75": _ap(self.tp75, self.n_ref, self.n_pred),
                "count_error": self.n_pred - self.n_ref}


def _ap(tp: int, n_ref: int, n_pred: int) -> float:
    denominator = n_ref + n_pred - tp  # TP + FN + FP
    return tp / denominator if denominator else 1.0


def score_pair(reference: np.ndarray, prediction: np.ndarray, name: str = "") -> PairScore:
    """SEG/DET/AP counts of one label image against its reference."""
    from scipy.optimize import linear_sum_assignment

    found = overlaps(reference, prediction)
    _, _, inter, union, _ = found
    counts = counts_of(*found)
    iou = inter / np.maximum(union, 1)
    tp = {}
    for threshold in (0.5, 0.75):
        rows, cols = linear_sum_assignment(-iou) if iou.size else (np.zeros(0, int), np.zeros(0, int))
        tp[threshold] = int((iou[rows, cols] >= threshold).sum())
    return PairScore(name, counts.n_ref, counts.n_pred, counts.seg_sum, counts.splits, counts.missed,
                     counts.spurious, tp[0.5], tp[0.75])


def pooled(scores: list[PairScore]) -> dict:
    """Overall scores over many images (sums over all objects, as CTC pools frames)."""
    total = sum((s.counts for s in scores), Counts())
    n_ref, n_pred, seg, det = total.n_ref, total.n_pred, total.seg, total.det
    return {"SEG": seg, "DET": det, "OP_CSB": (seg + det) / 2,
            "AP50": _ap(sum(s.tp50 for s in scores), n_ref, n_pred),
            "AP75": _ap(sum(s.tp75 for s in scores), n_ref, n_pred),
            "count_error": n_pred - n_ref, "n_ref": n_ref, "n_pred": n_pred}


def pair_files(pred_dir: Path, gt_dir: Path, suffix: str = "_labels") -> list[tuple[str, Path | None, Path]]:
    """(name, prediction or None, reference) for every reference in gt_dir: `<stem>_labels.tif`
    pairs with `<stem>.<ext>`; Cell Tracking Challenge references (`man_seg<NNN>.tif`) pair with
    `t<NNN>_labels.tif`. A reference with no prediction is kept (None): it scores as an empty one."""
    from .runtime.io import is_image_file

    predictions = {p.stem[: -len(suffix)]: p for p in sorted(pred_dir.iterdir())
                   if p.is_file() and is_image_file(p) and p.stem.endswith(suffix)}
    pairs = []
    for ref in sorted(p for p in gt_dir.iterdir() if p.is_file() and is_image_file(p)):
        ctc = "t" + ref.stem[len("man_seg"):] if ref.stem.startswith("man_seg") else None
        stem = ref.stem if ref.stem in predictions or ctc not in predictions else ctc
        pairs.append((stem, predictions.get(stem), ref))
    return pairs


def read_labels(path: Path) -> np.ndarray:
    """Label frames (N, H, W) of integer ids; DataError for a file that holds no label image: a
    colour-coded picture of labels (its colours would be scored as gray levels), non-integer values,
    or an intensity image (its gray levels form far more separate patches than there are levels)."""
    from skimage.measure import label

    from .runtime.io import ImageReadError, read_image

    frames = read_image(path).frames
    try:
        colours = [read_image(path, channel=c).frames for c in range(3)]
    except ImageReadError:
        colours = []  # one channel, as labels should be
    if colours and not all(np.array_equal(colours[0], other) for other in colours[1:]):
        raise DataError(f"{path} is a colour image: labels must be one channel of cell ids (a colour-coded picture "
                         "of labels cannot be scored; export the label image itself)")
    if frames.dtype.kind == "f" and not np.array_equal(frames, np.round(frames)):
        raise DataError(f"{path} holds fractional values: labels must be whole-number cell ids")
    for frame in frames:
        ids = np.count_nonzero(np.unique(frame))
        patches = int(label(frame, background=0, connectivity=1).max())
        if patches > 3 * ids + 20:
            raise DataError(f"{path} does not look like a label image: its {ids} values form {patches} separate "
                             "patches (an intensity image?); give the label image, one id per cell")
    return frames.astype(np.int64) if frames.dtype.kind == "f" else frames


def evaluate_folders(pred_dir: str | Path, gt_dir: str | Path) -> dict:
    """Score every reference against its prediction (missing ones as empty, listed with "missing": True);
    {"SEG", "DET", "OP_CSB", "AP50", "AP75", "missing": [...], "images": [...]}."""
    pairs = pair_files(Path(pred_dir), Path(gt_dir))
    if not any(pred for _, pred, _ in pairs):
        raise DataError(f"no prediction in {pred_dir} pairs with a reference in {gt_dir} "
                         "(expected <stem>_labels.tif beside <stem>.tif)")
    scores, images = [], []
    for name, pred, ref in pairs:
        ref_frames = read_labels(ref)
        pred_frames = read_labels(pred) if pred else np.zeros_like(ref_frames)
        if pred_frames.shape != ref_frames.shape:
            raise DataError(f"{pred}: shape {pred_frames.shape} differs from its reference {ref} {ref_frames.shape}")
        for f, (p, r) in enumerate(zip(pred_frames, ref_frames)):
            scores.append(score_pair(r, p, name if len(pred_frames) == 1 else f"{name}[{f}]"))
            images.append({**scores[-1].as_dict(), "missing": pred is None})
    missing = [name for name, pred, _ in pairs if pred is None]
    return {**pooled(scores), "missing": missing, "images": images}


PEAKS = (0.3, 0.35, 0.4, 0.45, 0.47, 0.5, 0.55, 0.6, 0.65, 0.7)
FILLS = (0.03, 0.06, 0.09, 0.12, 0.15, 0.2)


def threshold_sweep(distance_dir: str | Path, gt_dir: str | Path, peaks=PEAKS, fills=FILLS) -> list[dict]:
    """The paper's threshold ablation from saved distance maps (`<stem>_distance.tif`), no model run."""
    from .runtime.io import read_image

    pairs = pair_files(Path(distance_dir), Path(gt_dir), suffix="_distance")
    if not any(d for _, d, _ in pairs):
        raise DataError(f"no <stem>_distance.tif in {distance_dir} pairs with a reference in {gt_dir}")
    refs = {name: read_labels(r) for name, _, r in pairs}
    data = [(name, read_image(d).frames if d else np.zeros(refs[name].shape, np.float32), refs[name])
            for name, d, _ in pairs]  # a missing map scores as an empty prediction
    return sweep_maps([(name, dist, ref) for name, dists, refs in data for dist, ref in zip(dists, refs)], peaks, fills)


def sweep_maps(maps: list[tuple[str, np.ndarray, np.ndarray]], peaks=PEAKS, fills=FILLS) -> list[dict]:
    """Pooled scores of (name, distance map, reference labels) triples for every peak x fill."""
    from .runtime.postprocess import labels_from_distance

    rows = []
    for peak in peaks:
        for fill in fills:
            scores = [score_pair(ref, labels_from_distance(dist.astype(np.float32), peak, fill), name)
                      for name, dist, ref in maps]
            rows.append({"peak": peak, "fill": fill, **pooled(scores)})
    return rows
