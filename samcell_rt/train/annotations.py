"""Annotated images on disk: the layouts `train --data` reads, each turned into `Sample`s.

Layouts (each gives (image path, labels) pairs):
- plain pairs: `X.tif` with `X_labels.tif` (or `X_masks.*`), or `images/X.*` with `labels/X.*`;
- Cellpose folders: `*_img.png` with `*_masks.png`, and Cellpose GUI annotations: `X_seg.npy`
  (its `masks`) beside the image `X.*`;
- Cell Tracking Challenge: `01/t*.tif` with `01_GT/SEG/man_seg*.tif` (only annotated frames);
- LIVECell / COCO: a `*.json` annotation file whose images sit beside it (pycocotools).
Images go through the runtime's own `to_uint8`, so training sees what inference sees.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, SamcellError
from ..runtime.io import IMAGE_SUFFIXES, read_image
from ..runtime.preprocess import to_uint8

CELLPOSE_SEG = "_seg.npy"


@dataclass
class Sample:
    """One annotated image, loaded: gray uint8 image and int32 labels of the same shape."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    source: str = ""  # the --data entry it came from: validation is split and crops are drawn per source
    look: str = ""  # the rendered appearance (`render.RENDERERS` key) the real images already show, if any


def by_source(samples: list[Sample]) -> dict[str, list[Sample]]:
    """Samples grouped by source, sources in sorted order (so splits and draws are reproducible)."""
    groups: dict[str, list[Sample]] = {}
    for sample in sorted(samples, key=lambda s: s.source):
        groups.setdefault(sample.source, []).append(sample)
    return groups


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_labels(path: Path) -> np.ndarray:
    """A label image, or the masks of a Cellpose GUI `_seg.npy`, as int32 ids (see `label_ids`)."""
    if path.name.endswith(CELLPOSE_SEG):
        try:
            masks = np.asarray(_cellpose_dict(path)["masks"])
        except (OSError, ValueError, KeyError, TypeError, pickle.UnpicklingError) as exc:
            raise DataError(f"{path}: not a Cellpose annotation with masks ({exc})") from exc
        return label_ids(masks, path)
    return label_ids(read_image(path).frames[0], path)


def label_ids(raw: np.ndarray, path: str | Path) -> np.ndarray:
    """Label values as int32 ids, never wrapped by the cast: negative, non-finite or non-numeric
    values are refused naming the file; ids beyond int32 (uint32/uint64 files) are renumbered
    1..n in their order, which keeps every cell."""
    if raw.dtype == bool:
        return raw.astype(np.int32)
    if raw.dtype.kind not in "uif":
        raise DataError(f"{path}: labels of type {raw.dtype} are not integer ids")
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        raise DataError(f"{path}: labels hold NaN or infinite values; labels are integer ids, 0 for background")
    if raw.size and raw.min() < 0:
        raise DataError(f"{path}: negative label id {raw.min()}; labels are 0 for background and a positive id per cell")
    if raw.size and raw.max() > np.iinfo(np.int32).max:
        values, ids = np.unique(raw, return_inverse=True)
        return (ids.reshape(raw.shape) + int(values[0] != 0)).astype(np.int32)
    return raw.astype(np.int32)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays/scalars, nothing that could run code."""

    ALLOWED = {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
               for name in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _cellpose_dict(path: Path) -> dict:
    """The dict a Cellpose GUI saves with np.save (an object .npy), read with _ArraysOnly."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        _, _, dtype = read_header(handle)
        if dtype.kind != "O":
            raise ValueError("expected a saved dict")
        data = _ArraysOnly(handle).load()
    data = data.item() if isinstance(data, np.ndarray) else data
    if not isinstance(data, dict):
        raise ValueError("expected a saved dict")
    return data


def _cellpose_annotations(root: Path) -> list[tuple[Path, Path]]:
    by_stem = {p.stem: p for p in _images(root)}
    return [(by_stem[seg.name[: -len(CELLPOSE_SEG)]], seg) for seg in sorted(root.glob(f"*{CELLPOSE_SEG}"))
            if seg.name[: -len(CELLPOSE_SEG)] in by_stem]


def find_pairs(root: str | Path) -> list[tuple[Path, Path]]:
    """(image, label image) file pairs in a folder of any supported layout except COCO."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder of annotated images (give a folder, a COCO .json or pkg:NAME)")
    pairs: list[tuple[Path, Path]] = []
    if (root / "images").is_dir() and (root / "labels").is_dir():
        labels = {p.stem: p for p in _images(root / "labels")}
        pairs += [(p, labels[p.stem]) for p in _images(root / "images") if p.stem in labels]
    for gt in sorted(root.glob("*_GT/SEG")):  # Cell Tracking Challenge
        frames = root / gt.parent.name[: -len("_GT")]
        for mask in _images(gt):
            image = frames / f"t{mask.stem[len('man_seg'):]}{mask.suffix}"
            if image.exists():
                pairs.append((image, mask))
    pairs += _cellpose_annotations(root)
    files = _images(root)
    by_stem = {p.stem: p for p in files}
    for path in files:
        for label_suffix, image_suffix in (("_labels", ""), ("_masks", "_img"), ("_masks", "")):
            if path.stem.endswith(label_suffix):
                stem = path.stem[: -len(label_suffix)] + image_suffix
                if stem in by_stem:
                    pairs.append((by_stem[stem], path))
                    break
    return pairs


def load_coco(annotation: Path) -> list[Sample]:
    """LIVECell-style COCO polygons -> label images (one id per annotation); a file that is no such
    annotation (not JSON, a list, records without sizes or polygons) is a DataError naming it."""
    try:
        return _load_coco(annotation)
    except SamcellError:
        raise
    except (AssertionError, KeyError, TypeError, ValueError, IndexError) as exc:  # pycocotools asserts on format
        raise DataError(f"{annotation}: not a COCO annotation file ({type(exc).__name__}: {exc})") from exc


def _load_coco(annotation: Path) -> list[Sample]:
    from pycocotools.coco import COCO

    coco = COCO(str(annotation))
    samples = []
    for image_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(image_id)[0]
        labels = np.zeros((info["height"], info["width"]), np.int32)
        for index, ann in enumerate(coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None)), start=1):
            labels[coco.annToMask(ann) > 0] = index
        image_path = annotation.parent / info["file_name"]
        image = read_image(image_path).frames[0]
        check_same_size(image, labels, image_path, f"{annotation} (image id {image_id})")
        samples.append(Sample(info["file_name"], to_uint8(image), labels))
    return samples


def source_name(entry: str | Path) -> str:
    """The source name samples loaded from a --data entry carry: `pkg:NAME` as given, a folder or
    file as its normalised path (`data/x/` and `data/x` name one source)."""
    return str(Path(entry))


def load_pairs(root: Path, min_cell_area: int = 0) -> list[Sample]:
    """Every (image, labels) pair `find_pairs` finds under `root`, loaded; cells under `min_cell_area` px dropped."""
    samples = []
    for image_path, label_path in find_pairs(root):
        labels = read_labels(label_path)
        image = read_image(image_path).frames[0]
        check_same_size(image, labels, image_path, label_path)
        if min_cell_area:
            labels = _drop_small(labels, min_cell_area)
        samples.append(Sample(str(image_path), to_uint8(image), labels))
    return samples


def check_same_size(image: np.ndarray, labels: np.ndarray, image_name: str | Path, labels_name: str | Path) -> None:
    """DataError naming both files unless the labels cover the image pixel for pixel."""
    if image.shape[:2] != labels.shape:
        raise DataError(f"{labels_name}: labels of shape {labels.shape} for the image {image_name} of "
                        f"{image.shape[0]}x{image.shape[1]} pixels (height x width); they must match")


def _drop_small(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Remove label ids smaller than `min_area` pixels (automatic labels' specks)."""
    areas = np.bincount(labels.ravel())
    small = np.flatnonzero(areas < min_area)
    return np.where(np.isin(labels, small[small > 0]), 0, labels)
