"""`--zarr-labels`: a run's labels written back into each OME-Zarr input as NGFF labels.

The labels go to `<image>/labels/<name>` (default `samcell`), one full-resolution level with the
image's axes (channel axis of size 1) and its scale, plus `image-label` metadata, and the name is
added to `<image>/labels`' list, so napari and other NGFF viewers show them over the image. The
image's own arrays are never written. The group is built under a temporary name and renamed into
place, so a killed run leaves no half group under the real name (only a `.<name>.*.tmp` folder,
removed by the next write). An existing group of that name is replaced only when asked
(`replace`), by swapping it out with a rename before the new one goes in.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..runtime.atomic import write_text_atomic
from ..runtime.ome_zarr import ngff_attrs, open_image
from .image_files import label_dtype

LABELS_NAME = "samcell"
BAND_ROWS = 1024  # rows copied at a time from a lazily read label plane


def is_zarr_input(path: Path) -> bool:
    """An OME-Zarr image folder (a zipped store cannot take labels)."""
    return path.is_dir()


def check_targets(files: list[Path], name: str, replace: bool) -> None:
    """Before any work: every OME-Zarr input must be writable, and without `replace` must not
    already hold labels called `name`."""
    taken = [f for f in files if is_zarr_input(f) and (f / "labels" / name).exists()]
    if taken and not replace:
        listed = ", ".join(str(f) for f in taken[:3]) + (f" and {len(taken) - 3} more" if len(taken) > 3 else "")
        raise InputError(f"{listed} already hold{'s' if len(taken) == 1 else ''} labels {name!r}; "
                         "pass --replace-zarr-labels to replace them")
    zipped = [f for f in files if f.name.lower().endswith(".zip")]
    if zipped:
        raise InputError(f"{zipped[0]} is a zipped OME-Zarr store: --zarr-labels writes into folders only")
    for file in files:
        if is_zarr_input(file):
            _check_writable(file)


def _check_writable(image_path: Path) -> None:
    """Prove the labels can go where `write_labels` puts them (its `labels` group, or the image folder
    that will hold one) by writing a probe file there, as the user running the tool."""
    folder = image_path / "labels" if (image_path / "labels").exists() else image_path
    try:
        handle, probe = tempfile.mkstemp(prefix=".samcell-rt-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"{image_path}: --zarr-labels cannot write into this OME-Zarr store ({folder}: "
                         f"{exc.strerror or exc})") from None


def write_labels(image_path: Path, labels, name: str = LABELS_NAME, replace: bool = False) -> Path:
    """Write `labels` ((N, H, W) frames in the reader's order, or one (H, W) plane, possibly a lazy
    array) as `image_path/labels/name`; return that folder."""
    image = open_image(image_path)
    if not image.axes.endswith("YX"):
        raise ValueError(f"labels need an image whose last axes are y, x (axes {image.axes!r})")
    shape = tuple(1 if axis == "C" else size for axis, size in zip(image.axes, image.array.shape))
    if int(np.prod(labels.shape)) != int(np.prod(shape)) or tuple(labels.shape[-2:]) != shape[-2:]:
        raise ValueError(f"labels {tuple(labels.shape)} do not fit the image {tuple(image.array.shape)}")
    parent = image_path / "labels"
    final = parent / name
    if final.exists() and not replace:
        raise FileExistsError(f"{final} exists; pass --replace-zarr-labels to replace it")
    version = _version(image_path)
    parent.mkdir(exist_ok=True)
    for stale in parent.glob(f".{name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent))
    try:
        _write_group(tmp, labels, shape, image_path, name, version)
        _swap_in(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _list_label(parent, name, version)
    return final


def _version(image_path: Path) -> str:
    """"0.5" for zarr v3 stores (zarr.json), else "0.4" (zarr v2: .zattrs)."""
    return "0.5" if (image_path / "zarr.json").exists() else "0.4"


def _write_group(folder: Path, labels, shape: tuple[int, ...], image_path: Path, name: str, version: str) -> None:
    import zarr

    meta = ngff_attrs(image_path)["multiscales"][0]
    dtype = label_dtype(labels) if isinstance(labels, np.ndarray) else np.dtype(labels.dtype)
    fmt = 3 if version == "0.5" else 2
    group = zarr.open_group(str(folder), mode="w", zarr_format=fmt)
    chunks = tuple(1 for _ in shape[:-2]) + (min(shape[-2], BAND_ROWS), min(shape[-1], BAND_ROWS))
    array = group.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
    if labels.ndim > 2:
        labels = np.asarray(labels).reshape((-1,) + tuple(labels.shape[-2:]))  # stacks are in memory already
    for frame, position in enumerate(np.ndindex(*shape[:-2])):
        for start in range(0, shape[-2], BAND_ROWS):
            rows = slice(start, start + BAND_ROWS)
            band = np.asarray(labels[frame, rows] if labels.ndim > 2 else labels[rows])
            array[position + (slice(start, start + band.shape[0]), slice(None))] = band.astype(dtype, copy=False)
    dataset = meta["datasets"][0]
    multiscale = {"name": name, "axes": meta.get("axes"),
                  "datasets": [{"path": "0", "coordinateTransformations": dataset.get("coordinateTransformations")
                                or [{"type": "scale", "scale": [1.0] * len(shape)}]}]}
    if meta.get("coordinateTransformations"):
        multiscale["coordinateTransformations"] = meta["coordinateTransformations"]
    label_meta = {"version": version, "source": {"image": "../../"}}
    if version == "0.5":
        group.attrs["ome"] = {"version": version, "multiscales": [multiscale], "image-label": label_meta}
    else:
        group.attrs.update({"multiscales": [{**multiscale, "version": version}], "image-label": label_meta})


def _swap_in(tmp: Path, final: Path) -> None:
    """Rename the finished group into place; an existing one is first renamed aside, then removed."""
    if not final.exists():
        os.replace(tmp, final)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    os.replace(final, aside / "old")
    try:
        os.replace(tmp, final)
    except OSError:
        os.replace(aside / "old", final)  # put the old labels back rather than leave none
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _list_label(parent: Path, name: str, version: str) -> None:
    """Add `name` to the labels group's list (its metadata file written atomically)."""
    attrs = ngff_attrs(parent)
    names = [n for n in attrs.get("labels", []) if isinstance(n, str)]
    if name in names:
        return
    names.append(name)
    if version == "0.5":
        document = {"zarr_format": 3, "node_type": "group", "attributes": {"ome": {"version": version, "labels": names}}}
        write_text_atomic(parent / "zarr.json", json.dumps(document, indent=1))
    else:
        write_text_atomic(parent / ".zgroup", json.dumps({"zarr_format": 2}))
        write_text_atomic(parent / ".zattrs", json.dumps({"labels": names}, indent=1))
