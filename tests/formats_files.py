"""Real microscope files written here for the format tests: CZI (pylibCZIrw), OME-Zarr images and
HCS plates (ome-zarr), and LIF (the LAS X container layout, written byte by byte: no package writes
LIF and none ships a sample). ND2 comes from a registry package's sample (pims_nd2 1.1's cluster.nd2).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

PIXEL_UM = 0.65


def _ome_zarr_writer():
    """ome-zarr's writer, or a skip where the test environment lacks it (scripts/setup-test-env.sh installs it)."""
    return pytest.importorskip("ome_zarr.writer", reason="ome-zarr (test-data writer) is not installed")


def write_czi(path: Path, planes: np.ndarray, pixel_um: float | None = PIXEL_UM) -> Path:
    """`planes` (scenes, T, C, Y, X) as a CZI, scenes placed side by side as ZEN does."""
    from pylibCZIrw import czi as pyczi

    with pyczi.create_czi(str(path), exist_ok=True) as writer:
        for s, scene in enumerate(planes):
            for t, stack in enumerate(scene):
                for c, plane in enumerate(stack):
                    writer.write(np.ascontiguousarray(plane), plane={"T": t, "C": c}, scene=s,
                                 location=(s * (plane.shape[1] + 50), 0))
        if pixel_um:
            writer.write_metadata(scale_x=pixel_um * 1e-6, scale_y=pixel_um * 1e-6)
    return path


def ngff_axes(axes: str) -> list[dict]:
    kinds = {"t": ("time", "second"), "c": ("channel", None), "z": ("space", "micrometer"),
             "y": ("space", "micrometer"), "x": ("space", "micrometer")}
    return [{"name": a, "type": kinds[a][0], **({"unit": kinds[a][1]} if kinds[a][1] else {})} for a in axes]


def write_ome_zarr(path: Path, data: np.ndarray, axes: str, scale: list[float], version: str = "0.5",
                   chunks: tuple[int, ...] | None = None):
    """An OME-Zarr image (one resolution level) by ome-zarr's writer; the group it wrote."""
    import zarr

    write_image = _ome_zarr_writer().write_image
    from ome_zarr.format import FormatV04, FormatV05

    fmt = FormatV05() if version == "0.5" else FormatV04()
    group = path if not isinstance(path, Path) else zarr.open_group(str(path), mode="w",
                                                                       zarr_format=3 if version == "0.5" else 2)
    write_image(data, group, axes=ngff_axes(axes), fmt=fmt, scale_factors=[],
                coordinate_transformations=[[{"type": "scale", "scale": scale}]],
                storage_options={"chunks": chunks} if chunks else None)
    return group


def write_plate(path: Path, wells: dict[str, list[np.ndarray]], pixel_um: float = PIXEL_UM) -> Path:
    """An HCS plate: wells {"A/1": [field images (Y, X)], ...} on a 96-well layout."""
    import zarr

    writer = _ome_zarr_writer()
    write_plate_metadata, write_well_metadata = writer.write_plate_metadata, writer.write_well_metadata

    root = zarr.open_group(str(path), mode="w")
    rows = sorted({w.split("/")[0] for w in wells})
    columns = sorted({w.split("/")[1] for w in wells}, key=int)
    write_plate_metadata(root, rows, columns, list(wells), name=path.name)
    for well_path, fields in wells.items():
        well = root.require_group(well_path)
        write_well_metadata(well, [{"path": str(f)} for f in range(len(fields))])
        for f, image in enumerate(fields):
            write_ome_zarr(well.require_group(str(f)), image, "yx", [pixel_um, pixel_um])
    return path


def write_lif(path: Path, images: list[np.ndarray], pixel_um: float | list[float] = PIXEL_UM,
              interval_s: float | None = None) -> Path:
    """uint16 images (T, Y, X) as a LIF file: an XML header (UTF-16) describing each image's
    dimensions (X, Y in metres, T in seconds) and one memory block per image, as LAS X writes them.
    `pixel_um` may differ per image (a list)."""
    elements, blocks = [], []
    sizes = pixel_um if isinstance(pixel_um, list) else [pixel_um] * len(images)
    for index, (stack, pixel_um) in enumerate(zip(images, sizes)):
        frames, height, width = stack.shape
        dims = [(1, width, (width - 1) * pixel_um * 1e-6, "m", 2), (2, height, (height - 1) * pixel_um * 1e-6, "m",
                                                                  2 * width)]
        if frames > 1:
            dims.append((4, frames, (frames - 1) * (interval_s or 0), "s", 2 * width * height))
        described = "".join(f'<DimensionDescription DimID="{d}" NumberOfElements="{n}" Origin="0" Length="{length!r}" '
                            f'Unit="{unit}" BitInc="0" BytesInc="{inc}"/>' for d, n, length, unit, inc in dims)
        block_id = f"MemBlock_{index + 1}"
        elements.append(f'<Element Name="image{index}" UniqueID="{index}"><Data><Image><ImageDescription><Channels>'
                        '<ChannelDescription DataType="0" ChannelTag="0" Resolution="16" NameOfMeasuredQuantity="" '
                        'Min="0" Max="65535" Unit="" LUTName="Gray" IsLUTInverted="0" BytesInc="0" BitInc="0"/>'
                        f'</Channels><Dimensions>{described}</Dimensions></ImageDescription></Image></Data>'
                        f'<Memory Size="{stack.nbytes}" MemoryBlockID="{block_id}"/><Children/></Element>')
        blocks.append((block_id, stack.astype("<u2").tobytes()))
    xml = ('<LMSDataContainerHeader Version="2"><Element Name="project"><Data><Experiment/></Data>'
           '<Memory Size="0" MemoryBlockID="MemBlock_0"/><Children>' + "".join(elements) +
           "</Children></Element></LMSDataContainerHeader>")
    text = xml.encode("utf-16-le")
    out = [struct.pack("<IIBI", 0x70, len(text) + 5, 0x2A, len(xml)), text]
    for block_id, data in [("MemBlock_0", b""), *blocks]:
        name = block_id.encode("utf-16-le")
        out += [struct.pack("<IIBQBI", 0x70, 0, 0x2A, len(data), 0x2A, len(block_id)), name, data]
    path.write_bytes(b"".join(out))
    return path


def nd2_sample() -> Path | None:
    """pims_nd2 1.1's cluster.nd2 (T 3, Z 10, C 2, 31 x 38, 0.1678 um), where that package is installed."""
    import importlib.util

    spec = importlib.util.find_spec("pims_nd2")
    if spec is None or not spec.submodule_search_locations:
        return None
    sample = Path(next(iter(spec.submodule_search_locations))) / "cluster.nd2"
    return sample if sample.exists() else None
