// The samcell-rt runtime pipeline in plain JavaScript: the same arithmetic as samcell_rt/runtime
// (preprocess.py, tiling.py, postprocess.py, measure.py), so one image gives the same cells in a page
// as on the command line. No DOM and no onnxruntime here: the worker and Node tests import it as is.

export const TILE = 256;
export const OVERLAP = 32;
const WEIGHT_FLOOR = 1e-12;
const LUMA = [0.299, 0.587, 0.114];
export const PERCENTILES = [0.1, 99.9];
const f32 = Math.fround;

/** Round half to even, as numpy's rint and OpenCV's cvRound do (Math.round rounds halves up). */
export function rint(v) {
  const r = Math.round(v);
  return (r - v === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

/** BT.601 luma of interleaved RGB(A) samples, rounded back to the samples' integer type (io.rgb_to_gray). */
export function rgbToGray(samples, channels, count) {
  const out = new samples.constructor(count);
  const integer = !(samples instanceof Float32Array);
  for (let i = 0; i < count; i++) {
    const o = i * channels;
    const v = samples[o] * LUMA[0] + samples[o + 1] * LUMA[1] + samples[o + 2] * LUMA[2];
    out[i] = integer ? rint(v) : v;
  }
  return out;
}

/** numpy's default (linear) percentile of float32 values, lerp as numpy computes it. */
function percentile(sorted, q) {
  const pos = (q / 100) * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  const t = pos - lo;
  const a = sorted[lo], b = sorted[hi];
  const diff = f32(b - a);
  return t >= 0.5 ? f32(b - f32(diff * f32(1 - t))) : f32(a + f32(diff * f32(t)));
}

/** Scale any plane to uint8 without wrap-around (preprocess.to_uint8): uint8 passes through unchanged,
 * other types map min..max ("range") or the 0.1/99.9 percentiles ("percentile") onto 0..255 in float32. */
export function toUint8(pixels, scaling = "range") {
  if (pixels instanceof Uint8Array || pixels instanceof Uint8ClampedArray) return Uint8Array.from(pixels);
  const values = pixels instanceof Float32Array ? pixels : Float32Array.from(pixels);
  if (pixels instanceof Float32Array && !values.every(Number.isFinite)) throw new Error("image contains NaN or infinite values");
  let lo, hi;
  if (scaling === "percentile") {
    const sorted = Float32Array.from(values).sort();
    lo = percentile(sorted, PERCENTILES[0]);
    hi = percentile(sorted, PERCENTILES[1]);
  } else {
    lo = Infinity; hi = -Infinity;
    for (const v of values) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  const out = new Uint8Array(values.length);
  if (!(hi > lo)) return out;
  const low = f32(lo), gain = f32(255 / (hi - lo));
  for (let i = 0; i < values.length; i++) {
    const v = rint(f32(f32(values[i] - low) * gain));
    out[i] = v < 0 ? 0 : v > 255 ? 255 : v;
  }
  return out;
}

/** Tile starts along one axis (tiling.axis_starts): every tile - 2*overlap, the last ending overlap past the edge. */
export function axisStarts(length, tile = TILE, overlap = OVERLAP) {
  if (length < tile) return [0];
  const last = length + overlap - tile;
  const starts = [];
  for (let s = 0; s < last; s += tile - 2 * overlap) starts.push(s);
  starts.push(last);
  return starts;
}

/** Tile origins [y, x] row by row (tiling.tile_grid). */
export function tileGrid(height, width, tile = TILE, overlap = OVERLAP) {
  const ys = axisStarts(height, tile, overlap), xs = axisStarts(width, tile, overlap);
  const origins = [];
  for (const y of ys) for (const x of xs) origins.push([y, x]);
  return { height, width, tile, overlap, origins };
}

/** numpy "symmetric" padding index (OpenCV BORDER_REFLECT): edge pixels repeat, period 2n. */
function reflect(i, n) {
  const m = i % (2 * n);
  return m < n ? m : 2 * n - 1 - m;
}

/** One tile (tile x tile uint8) at origin y0, x0, reflecting past the image's far edges. */
export function extractTile(image, width, height, y0, x0, tile = TILE) {
  const out = new Uint8Array(tile * tile);
  for (let i = 0; i < tile; i++) {
    const row = reflect(y0 + i, height) * width;
    for (let j = 0; j < tile; j++) out[i * tile + j] = image[row + reflect(x0 + j, width)];
  }
  return out;
}

/** OpenCV's CLAHE (clip 1, 8x8 grid) then cv2.normalize NORM_MINMAX to 0..255 (preprocess.enhance_tile).
 * Every product below is exact in float32, so plain doubles reproduce OpenCV bit for bit. */
export function enhanceTile(tile, size = TILE, grid = 8) {
  if (size % grid !== 0) throw new Error(`tile size ${size} is not a multiple of ${grid}`);
  const step = size / grid, total = step * step;
  const clip = Math.max(Math.floor((1.0 * total) / 256), 1);
  const lutScale = f32(255 / total);
  const luts = new Uint8Array(grid * grid * 256);
  const hist = new Int32Array(256);
  for (let ty = 0; ty < grid; ty++) {
    for (let tx = 0; tx < grid; tx++) {
      hist.fill(0);
      for (let y = ty * step; y < (ty + 1) * step; y++) {
        for (let x = tx * step; x < (tx + 1) * step; x++) hist[tile[y * size + x]]++;
      }
      let clipped = 0;
      for (let i = 0; i < 256; i++) {
        if (hist[i] > clip) { clipped += hist[i] - clip; hist[i] = clip; }
      }
      const batch = Math.floor(clipped / 256);
      let residual = clipped - batch * 256;
      for (let i = 0; i < 256; i++) hist[i] += batch;
      if (residual !== 0) {
        const residualStep = Math.max(Math.floor(256 / residual), 1);
        for (let i = 0; i < 256 && residual > 0; i += residualStep, residual--) hist[i]++;
      }
      const lut = luts.subarray((ty * grid + tx) * 256, (ty * grid + tx + 1) * 256);
      let sum = 0;
      for (let i = 0; i < 256; i++) {
        sum += hist[i];
        lut[i] = Math.min(255, rint(f32(sum * lutScale)));
      }
    }
  }
  const out = new Uint8Array(size * size);
  const inv = f32(1 / step);
  const ind1 = new Int32Array(size), ind2 = new Int32Array(size), xa = new Float64Array(size);
  for (let x = 0; x < size; x++) {
    const txf = f32(f32(x * inv) - 0.5);
    const t1 = Math.floor(txf);
    xa[x] = f32(txf - t1);
    ind1[x] = Math.max(t1, 0) * 256;
    ind2[x] = Math.min(t1 + 1, grid - 1) * 256;
  }
  let lo = 255, hi = 0;
  for (let y = 0; y < size; y++) {
    const tyf = f32(f32(y * inv) - 0.5);
    const t1 = Math.floor(tyf);
    const ya = f32(tyf - t1), ya1 = f32(1 - ya);
    const plane1 = Math.max(t1, 0) * grid * 256, plane2 = Math.min(t1 + 1, grid - 1) * grid * 256;
    for (let x = 0; x < size; x++) {
      const v = tile[y * size + x], a = xa[x], a1 = f32(1 - a);
      const res = (luts[plane1 + ind1[x] + v] * a1 + luts[plane1 + ind2[x] + v] * a) * ya1
                + (luts[plane2 + ind1[x] + v] * a1 + luts[plane2 + ind2[x] + v] * a) * ya;
      const r = Math.min(255, Math.max(0, rint(f32(res))));
      out[y * size + x] = r;
      if (r < lo) lo = r;
      if (r > hi) hi = r;
    }
  }
  return normalizeMinMax(out, lo, hi);
}

/** cv2.normalize(..., 0, 255, NORM_MINMAX) on uint8: float32 scale and shift, fused multiply-add, cvRound. */
function normalizeMinMax(values, lo, hi) {
  const scaleD = hi - lo > 0 ? 255 * (1 / (hi - lo)) : 0;
  const scale = f32(scaleD), shift = f32(0 - lo * scaleD);
  for (let i = 0; i < values.length; i++) {
    const r = rint(f32(values[i] * scale + shift));
    values[i] = r < 0 ? 0 : r > 255 ? 255 : r;
  }
  return values;
}

/** The reference blending weights of one tile (tiling.edge_weights), float32 with a tiny floor. */
export function edgeWeights(tile = TILE, overlap = OVERLAP) {
  const profile = new Float64Array(tile).fill(1);
  for (let i = 0; i < overlap; i++) {
    const ramp = 0.5 * (1 - Math.cos((Math.PI * i) / overlap));
    profile[i] *= ramp;
    profile[tile - 1 - i] *= ramp;
  }
  const weights = new Float32Array(tile * tile);
  for (let i = 0; i < tile; i++) for (let j = 0; j < tile; j++) weights[i * tile + j] = profile[i] * profile[j] + WEIGHT_FLOOR;
  return weights;
}

/** Accumulates weighted tile maps into image-sized float32 sums (_blend_kernel.accumulate), then divides. */
export class Blender {
  constructor(grid) {
    this.grid = grid;
    this.acc = new Float32Array(grid.height * grid.width);
    this.wsum = new Float32Array(grid.height * grid.width);
    this.weights = edgeWeights(grid.tile, grid.overlap);
  }

  add(map, y0, x0) {
    const { width, height, tile } = this.grid;
    const rows = Math.min(tile, height - y0), cols = Math.min(tile, width - x0);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        const w = this.weights[i * tile + j], p = (y0 + i) * width + x0 + j;
        this.acc[p] += f32(map[i * tile + j] * w);
        this.wsum[p] += w;
      }
    }
  }

  result() {
    for (let p = 0; p < this.acc.length; p++) this.acc[p] = this.acc[p] / this.wsum[p];
    return this.acc;
  }
}

// 8 directions, counter-clockwise on screen (y grows downwards): E, NE, N, NW, W, SW, S, SE
const DX = [1, 1, 0, -1, -1, -1, 0, 1];
const DY = [0, -1, -1, -1, 0, 1, 1, 1];

/** Outer border of the 8-connected region holding (x0, y0), its raster-first pixel, traced as OpenCV's
 * findContours (Suzuki) does: pixel centres, full chain (no approximation). */
function traceBorder(inside, width, height, x0, y0) {
  const at = (x, y) => x >= 0 && y >= 0 && x < width && y < height && inside(y * width + x);
  let first = -1;
  for (let k = 0; k < 8; k++) {
    const d = (4 - k + 8) % 8; // clockwise from W
    if (at(x0 + DX[d], y0 + DY[d])) { first = d; break; }
  }
  const points = [[x0, y0]];
  if (first < 0) return points;
  const x1 = x0 + DX[first], y1 = y0 + DY[first];
  let cx = x0, cy = y0, back = first; // back: the direction to the previous border pixel
  for (;;) {
    let found = back;
    for (let k = 1; k <= 8; k++) {
      const d = (back + k) % 8;
      if (at(cx + DX[d], cy + DY[d])) { found = d; break; }
    }
    const nx = cx + DX[found], ny = cy + DY[found];
    if (nx === x0 && ny === y0 && cx === x1 && cy === y1) break;
    cx = nx; cy = ny;
    back = (found + 4) % 8;
    points.push([cx, cy]);
  }
  return points;
}

/** One marker pixel per peak region (postprocess.peak_markers): for each outermost 8-connected region of
 * distance > peak, the centroid of its border polygon truncated to integers, as OpenCV's findContours
 * (RETR_EXTERNAL) and moments give it. Borders of fewer than 3 corner points (single pixels, straight
 * lines) get none, regions inside another region's hole get none. Marker ids follow OpenCV's contour order. */
export function peakMarkers(distance, width, height, peak) {
  const threshold = f32(peak);
  const n = width * height;
  const component = new Int32Array(n).fill(-1);
  const starts = [];
  const stack = [];
  for (let p = 0; p < n; p++) {
    if (!(distance[p] > threshold) || component[p] >= 0) continue;
    const id = starts.length;
    starts.push(p);
    component[p] = id;
    stack.push(p);
    while (stack.length) {
      const q = stack.pop(), x = q % width, y = (q - x) / width;
      for (let d = 0; d < 8; d++) {
        const nx = x + DX[d], ny = y + DY[d];
        if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
        const r = ny * width + nx;
        if (component[r] < 0 && distance[r] > threshold) { component[r] = id; stack.push(r); }
      }
    }
  }
  const outer = outerComponents(component, starts.length, width, height);
  const markers = new Int32Array(n);
  for (let id = starts.length - 1, index = 0; id >= 0; id--) {
    if (!outer[id]) continue;
    index++;
    const x0 = starts[id] % width, y0 = (starts[id] - x0) / width;
    const points = traceBorder((q) => component[q] === id, width, height, x0, y0);
    const corners = cornerPoints(points);
    if (corners.length < 3) continue;
    let [cx, cy] = polygonCentroid(points);
    if (cx === null) {
      cx = Math.trunc(corners.reduce((s, p) => s + p[0], 0) / corners.length);
      cy = Math.trunc(corners.reduce((s, p) => s + p[1], 0) / corners.length);
    }
    markers[Math.min(Math.max(cy, 0), height - 1) * width + Math.min(Math.max(cx, 0), width - 1)] = index;
  }
  return markers;
}

/** Which components touch the background outside every hole (4-connected background, image edge included). */
function outerComponents(component, count, width, height) {
  const outside = new Uint8Array(width * height);
  const stack = [];
  for (let x = 0; x < width; x++) stack.push(x, (height - 1) * width + x);
  for (let y = 0; y < height; y++) stack.push(y * width, y * width + width - 1);
  const outer = new Uint8Array(count);
  while (stack.length) {
    const q = stack.pop();
    if (component[q] >= 0) { outer[component[q]] = 1; continue; }
    if (outside[q]) continue;
    outside[q] = 1;
    const x = q % width, y = (q - x) / width;
    if (x > 0) stack.push(q - 1);
    if (x < width - 1) stack.push(q + 1);
    if (y > 0) stack.push(q - width);
    if (y < height - 1) stack.push(q + width);
  }
  return outer;
}

/** The points CHAIN_APPROX_SIMPLE keeps: the start and every point where the chain turns. */
function cornerPoints(points) {
  if (points.length < 2) return points;
  const dir = (a, b) => `${b[0] - a[0]},${b[1] - a[1]}`;
  const kept = [points[0]];
  for (let i = 1; i < points.length; i++) {
    if (dir(points[i - 1], points[i]) !== dir(points[i], points[(i + 1) % points.length])) kept.push(points[i]);
  }
  return kept;
}

/** int(m10 / m00), int(m01 / m00) of the polygon as cv2.moments computes them; [null, null] for zero area. */
function polygonCentroid(points) {
  let a00 = 0, a10 = 0, a01 = 0;
  let [px, py] = points[points.length - 1];
  for (const [x, y] of points) {
    const dxy = px * y - x * py;
    a00 += dxy; a10 += dxy * (px + x); a01 += dxy * (py + y);
    px = x; py = y;
  }
  if (Math.abs(a00) <= 1.1920928955078125e-7) return [null, null];
  const half = a00 > 0 ? 0.5 : -0.5, sixth = a00 > 0 ? 0.16666666666666666 : -0.16666666666666666;
  const m00 = a00 * half;
  return [Math.trunc((a10 * sixth) / m00), Math.trunc((a01 * sixth) / m00)];
}

/** Binary min-heap on (value, age), the order scikit-image's watershed pops its queue in. */
class Heap {
  constructor(capacity) {
    this.value = new Float64Array(capacity);
    this.age = new Float64Array(capacity);
    this.index = new Int32Array(capacity);
    this.size = 0;
  }

  less(i, j) {
    return this.value[i] !== this.value[j] ? this.value[i] < this.value[j] : this.age[i] < this.age[j];
  }

  swap(i, j) {
    for (const a of [this.value, this.age, this.index]) { const t = a[i]; a[i] = a[j]; a[j] = t; }
  }

  push(value, age, index) {
    let i = this.size++;
    this.value[i] = value; this.age[i] = age; this.index[i] = index;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  pop() {
    const top = this.index[0];
    this.size--;
    if (this.size > 0) {
      this.swap(0, this.size);
      for (let i = 0; ;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < this.size && this.less(l, m)) m = l;
        if (r < this.size && this.less(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

/** Watershed of -distance from the markers inside distance > fill (skimage.segmentation.watershed,
 * 4-connected): a pixel takes its label when first reached from the lowest, oldest queued pixel. */
export function watershed(distance, markers, width, height, fill) {
  const threshold = f32(fill);
  const n = width * height;
  const labels = new Int32Array(n);
  const heap = new Heap(n);
  for (let p = 0; p < n; p++) {
    if (markers[p] && distance[p] > threshold) { labels[p] = markers[p]; heap.push(-distance[p], 0, p); }
  }
  let age = 0;
  while (heap.size) {
    const p = heap.pop(), x = p % width;
    const neighbours = [p >= width ? p - width : -1, x > 0 ? p - 1 : -1, x < width - 1 ? p + 1 : -1,
      p + width < n ? p + width : -1];
    for (const q of neighbours) {
      if (q < 0 || labels[q] || !(distance[q] > threshold)) continue;
      labels[q] = labels[p];
      heap.push(-distance[q], ++age, q);
    }
  }
  return labels;
}

/** Labels renumbered 1..N in ascending order of their ids (skimage relabel_sequential); returns [labels, N]. */
export function relabel(labels) {
  let max = 0;
  for (const v of labels) if (v > max) max = v;
  const map = new Int32Array(max + 1);
  for (const v of labels) if (v) map[v] = 1;
  let count = 0;
  for (let v = 1; v <= max; v++) if (map[v]) map[v] = ++count;
  const out = count < 65536 ? new Uint16Array(labels.length) : new Uint32Array(labels.length);
  for (let i = 0; i < labels.length; i++) out[i] = map[labels[i]];
  return [out, count];
}

/** Labels (0 background, 1..N) from a distance map, as postprocess.labels_from_distance. */
export function labelsFromDistance(distance, width, height, peak, fill) {
  const markers = peakMarkers(distance, width, height, peak);
  return relabel(watershed(distance, markers, width, height, fill));
}

// scikit-image's perimeter weights, indexed by 1 + 2 * (4-neighbours on the border) + 10 * (diagonal ones)
const PERIMETER_WEIGHTS = new Float64Array(50);
for (const i of [5, 7, 15, 17, 25, 27]) PERIMETER_WEIGHTS[i] = 1;
for (const i of [21, 33]) PERIMETER_WEIGHTS[i] = Math.SQRT2;
for (const i of [13, 23]) PERIMETER_WEIGHTS[i] = (1 + Math.SQRT2) / 2;

/** Per-cell id, centroid (y, x), area, perimeter and circularity, the definitions of measure.cell_table:
 * scikit-image regionprops' perimeter (4-connected border pixels weighted by their border neighbours). */
export function cellTable(labels, width, height, count) {
  const area = new Float64Array(count + 1), sy = new Float64Array(count + 1), sx = new Float64Array(count + 1);
  const border = new Uint8Array(labels.length);
  const at = (x, y) => (x < 0 || y < 0 || x >= width || y >= height ? 0 : labels[y * width + x]);
  for (let y = 0, p = 0; y < height; y++) {
    for (let x = 0; x < width; x++, p++) {
      const v = labels[p];
      if (!v) continue;
      area[v]++; sy[v] += y; sx[v] += x;
      border[p] = at(x - 1, y) !== v || at(x + 1, y) !== v || at(x, y - 1) !== v || at(x, y + 1) !== v ? 1 : 0;
    }
  }
  const hist = new Int32Array((count + 1) * 50);
  const onBorder = (x, y, v) => at(x, y) === v && border[y * width + x];
  for (let y = 0, p = 0; y < height; y++) {
    for (let x = 0; x < width; x++, p++) {
      const v = labels[p];
      if (!v || !border[p]) continue;
      let code = 1;
      for (const [dx, dy] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) if (onBorder(x + dx, y + dy, v)) code += 2;
      for (const [dx, dy] of [[1, 1], [-1, 1], [1, -1], [-1, -1]]) if (onBorder(x + dx, y + dy, v)) code += 10;
      hist[v * 50 + code]++;
    }
  }
  const rows = [];
  for (let v = 1; v <= count; v++) {
    if (!area[v]) continue;
    let perimeter = 0;
    for (let k = 0; k < 50; k++) perimeter += hist[v * 50 + k] * PERIMETER_WEIGHTS[k];
    rows.push({
      id: v, centroid_y: sy[v] / area[v], centroid_x: sx[v] / area[v], area: area[v], perimeter,
      circularity: perimeter > 0 ? (4 * Math.PI * area[v]) / (perimeter * perimeter) : null,
    });
  }
  return rows;
}

// marching squares around one cell, inside on the right: case (tl 8, tr 4, br 2, bl 1) -> [entry, exit]
// edges (0 top, 1 right, 2 bottom, 3 left); diagonal pairs stay joined, so every ring is simple
const SEGMENTS = {
  1: [[3, 2]], 2: [[2, 1]], 3: [[3, 1]], 4: [[1, 0]], 5: [[3, 0], [1, 2]], 6: [[2, 0]], 7: [[3, 0]],
  8: [[0, 3]], 9: [[0, 2]], 10: [[0, 1], [2, 3]], 11: [[0, 1]], 12: [[1, 3]], 13: [[1, 2]], 14: [[2, 3]],
};
const EDGE_POINT = [[1, 0.5], [1.5, 1], [1, 1.5], [0.5, 1]]; // crossing point of each edge, from the cell origin
const STEP = [[0, -1, 2], [1, 0, 3], [0, 1, 0], [-1, 0, 1]]; // leaving by an edge: dx, dy, entry edge of the next cell

/** Outer outline of cell `id` (whose raster-first pixel is p0) as a closed ring of [x, y] in pixel units
 * (pixel (c, r) covers c..c+1, r..r+1): the 0.5 contour through pixel centres, holes ignored. */
export function outline(labels, width, height, id, p0) {
  const inside = (x, y) => (x >= 0 && y >= 0 && x < width && y < height && labels[y * width + x] === id ? 1 : 0);
  const x0 = (p0 % width) - 1, y0 = Math.floor(p0 / width) - 1;
  const ring = [];
  let x = x0, y = y0, entry = 2;
  do {
    const cell = inside(x, y) * 8 + inside(x + 1, y) * 4 + inside(x + 1, y + 1) * 2 + inside(x, y + 1);
    const exit = SEGMENTS[cell].find(([from]) => from === entry)[1];
    ring.push([x + EDGE_POINT[exit][0], y + EDGE_POINT[exit][1]]);
    [x, y, entry] = [x + STEP[exit][0], y + STEP[exit][1], STEP[exit][2]];
  } while (x !== x0 || y !== y0 || entry !== 2);
  ring.push(ring[0]);
  return ring;
}

/** Every cell's outline, keyed by id. */
export function outlines(labels, width, height, count) {
  const first = new Int32Array(count + 1).fill(-1);
  for (let p = 0; p < labels.length; p++) if (labels[p] && first[labels[p]] < 0) first[labels[p]] = p;
  const rings = new Map();
  for (let v = 1; v <= count; v++) if (first[v] >= 0) rings.set(v, outline(labels, width, height, v, first[v]));
  return rings;
}
