"""numba kernel for weighted tile accumulation (kept apart so numba loads only when blending)."""

import numba


@numba.njit(cache=True, nogil=True)
def accumulate(maps, ys, xs, weights, acc, wsum):  # pragma: no cover - compiled
    """Add each tile's weighted map and its weights into the image-sized accumulators.

    Tiles may reach past the image's far edges (their reflected part); those pixels are skipped.
    """
    height, width = acc.shape
    tile = maps.shape[1]
    for k in range(maps.shape[0]):
        y0 = ys[k]
        x0 = xs[k]
        rows = min(tile, height - y0)
        cols = min(tile, width - x0)
        for i in range(rows):
            for j in range(cols):
                w = weights[i, j]
                acc[y0 + i, x0 + j] += maps[k, i, j] * w
                wsum[y0 + i, x0 + j] += w
