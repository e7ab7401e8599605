// samcell-rt in the browser: the ES module the page is built on, for embedding in other pages and
// instrument software. Images never leave the computer: the model runs in a Web Worker.
//
//   import { loadModel, labelsTiff, cellsCsv, outlinesGeoJson } from "./samcell.js";
//   const model = await loadModel("model.onnx");
//   const result = await model.segment(file, { onProgress: (done, total) => console.log(done, total) });
//   console.log(result.count, result.cells[0]);   // labels: result.labels (Uint16Array or Uint32Array)
import { outlines } from "./pipeline.js";
import { writeTiff } from "./tiff.js";

export const DEFAULT_MAX_PIXELS = 64 * 1024 * 1024; // a tab holds about 20 bytes per pixel while it works

/** An error the API rejects with; `kind` is "image", "too-large", "model", "cancelled" or "internal". */
export class SamcellError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = kind === "cancelled" ? "AbortError" : "SamcellError";
    this.kind = kind;
  }
}

/** Load a samcell-rt ONNX model from a URL into a new worker. Options: `threads` (wasm threads; default
 * the CPU's cores up to 8, one where the page is not cross-origin isolated), `backend` ("auto",
 * "wasm" or "webgpu"), `runtimeUrl` (the folder of the onnxruntime-web files; default ./ort/ beside
 * this module). Resolves to a Model; rejects with a SamcellError of kind "model". */
export async function loadModel(url, { threads = 0, backend = "auto", runtimeUrl } = {}) {
  const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  const model = new Model(worker);
  const absolute = new URL(url, globalThis.location?.href ?? import.meta.url).href;
  const runtime = new URL(runtimeUrl ?? "./ort/", import.meta.url).href;
  try {
    Object.assign(model, await model._request({ type: "load", modelUrl: absolute, runtimeUrl: runtime, threads, backend }));
  } catch (error) {
    worker.terminate();
    throw error;
  }
  return model;
}

export class Model {
  constructor(worker) {
    this._worker = worker;
    this._next = 0;
    this._pending = new Map();
    this._queue = Promise.resolve();
    worker.onmessage = ({ data }) => this._receive(data);
    worker.onerror = (event) => this._failAll(new SamcellError("internal", `worker failed: ${event.message}`));
  }

  /** Segment one image: a File, Blob or ArrayBuffer of a PNG, JPEG or TIFF file, or raw pixels
   * { pixels, width, height, bitDepth } (bitDepth 8, 16 or 32 for float; 16-bit is scaled as the
   * runtime scales it, never cast). Options: `frame` (TIFF page, from 0), `scaling` ("range" or
   * "percentile"), `pixelSizeUm` (adds micrometre columns; default the file's own calibration),
   * `onProgress(doneTiles, totalTiles)`, `signal` (an AbortSignal that cancels), `maxPixels`,
   * `batchSize` (tiles per onnxruntime call). Calls run one after another.
   * Resolves to { labels, width, height, count, cells, timings, tiles, frame, frames, pixelSizeUm, image8 }. */
  segment(image, options = {}) {
    const run = () => this._segment(image, options);
    const result = this._queue.then(run, run);
    this._queue = result.catch(() => {});
    return result;
  }

  async _segment(image, { frame = 0, scaling = "range", pixelSizeUm = null, onProgress, signal, maxPixels = DEFAULT_MAX_PIXELS, batchSize = 1 } = {}) {
    if (signal?.aborted) throw new SamcellError("cancelled", "cancelled");
    const payload = await imagePayload(image);
    const options = { frame, scaling, maxPixels, batchSize };
    const result = await this._request({ type: "segment", image: payload, options }, onProgress, signal,
      payload.buffer ? [payload.buffer] : []);
    result.pixelSizeUm = pixelSizeUm || result.pixelSizeUm || null;
    result.cells = withMicrometres(result.cells, result.pixelSizeUm);
    result.threads = this.threads;
    result.backend = this.backend;
    return result;
  }

  /** Stop the worker; the model cannot be used after. */
  dispose() {
    this._worker.terminate();
    this._failAll(new SamcellError("cancelled", "model disposed"));
  }

  _request(message, onProgress, signal, transfer = []) {
    const id = ++this._next;
    return new Promise((resolve, reject) => {
      const abort = () => this._worker.postMessage({ type: "cancel", id });
      signal?.addEventListener("abort", abort, { once: true });
      this._pending.set(id, { resolve, reject, onProgress, done: () => signal?.removeEventListener("abort", abort) });
      this._worker.postMessage({ ...message, id }, transfer);
    });
  }

  _receive(data) {
    const pending = this._pending.get(data.id);
    if (!pending) return;
    if (data.type === "progress") { pending.onProgress?.(data.done, data.total); return; }
    this._pending.delete(data.id);
    pending.done();
    if (data.type === "done") pending.resolve(data.result);
    else pending.reject(new SamcellError(data.kind, data.message));
  }

  _failAll(error) {
    for (const pending of this._pending.values()) pending.reject(error);
    this._pending.clear();
  }
}

async function imagePayload(image) {
  if (image instanceof Blob) return { buffer: await image.arrayBuffer(), name: image.name || "image" };
  if (image instanceof ArrayBuffer) return { buffer: image.slice(0), name: "image" };
  if (ArrayBuffer.isView(image)) return { buffer: image.buffer.slice(image.byteOffset, image.byteOffset + image.byteLength), name: "image" };
  if (image && image.pixels && image.width && image.height) {
    const Type = { 8: Uint8Array, 16: Uint16Array, 32: Float32Array }[image.bitDepth || 8];
    if (!Type) throw new SamcellError("image", `bitDepth ${image.bitDepth}: give 8, 16 or 32 (float)`);
    return { pixels: Type.from(image.pixels), width: image.width, height: image.height };
  }
  throw new SamcellError("image", "give a File, Blob or ArrayBuffer of an image file, or { pixels, width, height, bitDepth }");
}

const PHYSICAL = { area: 2, perimeter: 1, centroid_y: 1, centroid_x: 1 };

function withMicrometres(cells, pixelSizeUm) {
  if (!pixelSizeUm) return cells;
  return cells.map((cell) => {
    const extra = {};
    for (const [name, power] of Object.entries(PHYSICAL)) extra[`${name}_um${power > 1 ? power : ""}`] = cell[name] * pixelSizeUm ** power;
    return { ...cell, ...extra };
  });
}

/** The labels as an uncompressed uint16 TIFF (uint32 above 65,535 cells), a Blob. */
export function labelsTiff(result) {
  return new Blob([writeTiff(result.labels, result.width, result.height)], { type: "image/tiff" });
}

/** The cell table as CSV text, one row per cell, columns as in `samcell-rt segment`'s cells.csv. */
export function cellsCsv(result) {
  const columns = result.cells.length ? Object.keys(result.cells[0]) : ["id", "centroid_y", "centroid_x", "area", "perimeter", "circularity"];
  const value = (v) => (v === null || v === undefined ? "" : Number.isInteger(v) ? String(v) : v.toPrecision(8));
  return [columns.join(","), ...result.cells.map((cell) => columns.map((c) => value(cell[c])).join(","))].join("\n") + "\n";
}

/** Cell outlines as a GeoJSON FeatureCollection of Polygons in pixel coordinates ([x, y], pixel (c, r)
 * covering c..c+1, r..r+1), each with the cell's row of the table as properties. */
export function outlinesGeoJson(result) {
  const rings = outlines(result.labels, result.width, result.height, result.count);
  const byId = new Map(result.cells.map((cell) => [cell.id, cell]));
  const features = [...rings].map(([id, ring]) => ({
    type: "Feature", geometry: { type: "Polygon", coordinates: [ring] }, properties: byId.get(id) || { id },
  }));
  return { type: "FeatureCollection", features };
}
