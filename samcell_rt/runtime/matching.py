"""CTC SEG and DET of one set of labels against another, inside the runtime: the bf16 guard scores an
engine's bf16 labels against its own fp32 labels at start, and the runtime may not import
`samcell_rt.evaluate` (layers import downward only).

Definitions (Matula et al. 2015, as the CTC's tools and py-ctcmetrics compute them): a reference object
R is matched by a predicted object S when |R ∩ S| > 0.5 |R|; SEG is the mean IoU of every reference
with its match (0 when unmatched); DET = 1 - min(AOGM_D, AOGM_D0) / AOGM_D0 with AOGM_D = 5 NS + 10 FN
+ 1 FP and AOGM_D0 = 10 × references. Over several images the counts are pooled, as CTC pools frames.
With no reference objects, both are 1 when nothing was predicted and 0 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError

W_NS, W_FN, W_FP = 5, 10, 1


@dataclass(frozen=True)
class Counts:
    """What SEG and DET are made of, for one image or pooled over several (`+`)."""

    n_ref: int = 0
    n_pred: int = 0
    seg_sum: float = 0.0
    splits: int = 0  # NS: a prediction matching k references costs k - 1
    missed: int = 0  # FN: references nothing matches
    spurious: int = 0  # FP: predictions that match no reference

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(self._values(), other._values())))

    def _values(self) -> tuple:
        return self.n_ref, self.n_pred, self.seg_sum, self.splits, self.missed, self.spurious

    @property
    def seg(self) -> float:
        return self.seg_sum / self.n_ref if self.n_ref else float(self.n_pred == 0)

    @property
    def det(self) -> float:
        if not self.n_ref:
            return float(self.n_pred == 0)
        aogm0 = W_FN * self.n_ref
        return 1.0 - min(W_NS * self.splits + W_FN * self.missed + W_FP * self.spurious, aogm0) / aogm0


def overlaps(reference: np.ndarray, prediction: np.ndarray):
    """Reference ids, predicted ids, their intersection and union matrices (ref x pred) and the
    references' areas; background (0) left out."""
    if reference.shape != prediction.shape:
        raise DataError(f"shapes differ: reference {reference.shape}, prediction {prediction.shape}")
    ref_ids, ref_index = np.unique(reference, return_inverse=True)
    pred_ids, pred_index = np.unique(prediction, return_inverse=True)
    pairs = ref_index.ravel().astype(np.int64) * len(pred_ids) + pred_index.ravel()
    counts = np.bincount(pairs, minlength=len(ref_ids) * len(pred_ids)).reshape(len(ref_ids), len(pred_ids))
    ref_area, pred_area = counts.sum(axis=1, keepdims=True), counts.sum(axis=0, keepdims=True)
    keep_r, keep_p = ref_ids != 0, pred_ids != 0
    inter = counts[np.ix_(keep_r, keep_p)]
    union = (ref_area + pred_area - counts)[np.ix_(keep_r, keep_p)]
    return ref_ids[keep_r], pred_ids[keep_p], inter, union, ref_area[keep_r, 0]


def match_counts(reference: np.ndarray, prediction: np.ndarray) -> Counts:
    """The SEG and DET counts of one label image against its reference."""
    return counts_of(*overlaps(reference, prediction))


def counts_of(ref_ids: np.ndarray, pred_ids: np.ndarray, inter: np.ndarray, union: np.ndarray,
              ref_area: np.ndarray) -> Counts:
    """The SEG and DET counts from `overlaps`' result (which `evaluate` also needs for AP)."""
    match = inter > 0.5 * ref_area[:, None]  # at most one True per reference row
    per_prediction = match.sum(axis=0)
    return Counts(len(ref_ids), len(pred_ids), float((inter / np.maximum(union, 1))[match].sum()),
                  int(np.maximum(per_prediction - 1, 0).sum()), int((~match.any(axis=1)).sum()),
                  int((per_prediction == 0).sum()))
