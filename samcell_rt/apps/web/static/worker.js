// The page's Web Worker: decodes images, runs the tiles through onnxruntime-web and post-processes,
// so the page stays responsive. Messages: {type: "load" | "segment" | "cancel", id, ...}; every
// request is answered with {id, type: "done", result} or {id, type: "error", kind, message}.
import { Blender, cellTable, enhanceTile, extractTile, labelsFromDistance, rgbToGray, tileGrid, toUint8 } from "./pipeline.js";
import { INPUT_NAME, OUTPUT_NAME, OUTPUT_SLACK, modelInfo } from "./onnx.js";
import { isTiff, pageSize, readTiffPage, tiffPages } from "./tiff.js";

const MODEL_CACHE = "samcell-models";
let ort = null, session = null, info = null;
const cancelled = new Set();

class Failure extends Error {
  constructor(kind, message) { super(message); this.kind = kind; }
}

self.onmessage = async ({ data }) => {
  if (data.type === "cancel") { cancelled.add(data.id); return; }
  try {
    const [result, transfer] = data.type === "load" ? [await load(data), []] : await segment(data);
    self.postMessage({ id: data.id, type: "done", result }, transfer);
  } catch (error) {
    self.postMessage({ id: data.id, type: "error", kind: error.kind || "internal", message: error.message || String(error) });
  } finally {
    cancelled.delete(data.id);
  }
};

async function load({ modelUrl, runtimeUrl, threads, backend }) {
  const notes = [];
  const isolated = self.crossOriginIsolated === true && typeof SharedArrayBuffer !== "undefined";
  if (!isolated) notes.push("wasm threads are unavailable here (the page is not served cross-origin isolated, see the README): running on one thread");
  const gpu = backend !== "wasm" && "gpu" in navigator ? await navigator.gpu.requestAdapter().catch(() => null) : null;
  if (backend === "webgpu" && !gpu) notes.push("WebGPU is not available in this browser: running on wasm");
  ort = await import(new URL(gpu ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs", runtimeUrl).href);
  ort.env.wasm.wasmPaths = runtimeUrl;
  ort.env.wasm.numThreads = isolated ? Math.max(1, threads || Math.min(navigator.hardwareConcurrency || 1, 8)) : 1;
  const bytes = await fetchModel(modelUrl);
  try {
    info = modelInfo(bytes);
  } catch (error) {
    throw new Failure("model", `${modelUrl}: ${error.message}`);
  }
  try {
    session = await ort.InferenceSession.create(bytes, { executionProviders: gpu ? ["webgpu", "wasm"] : ["wasm"] });
  } catch (error) {
    throw new Failure("model", `${modelUrl}: onnxruntime-web cannot load it (${error.message || error})`);
  }
  if (!session.inputNames.includes(INPUT_NAME) || !session.outputNames.includes(OUTPUT_NAME)) {
    throw new Failure("model", `${modelUrl}: breaks the samcell-rt ONNX contract (needs input "${INPUT_NAME}" and output "${OUTPUT_NAME}")`);
  }
  return { info, threads: ort.env.wasm.numThreads, backend: gpu ? "webgpu" : "wasm", notes };
}

/** The model's bytes, from the browser's cache after the first load (the URL names the version). */
async function fetchModel(url) {
  const cache = self.caches ? await self.caches.open(MODEL_CACHE).catch(() => null) : null;
  let response = cache ? await cache.match(url) : undefined;
  if (!response) {
    try {
      response = await fetch(url);
    } catch (error) {
      throw new Failure("model", `${url}: cannot be fetched (${error.message})`);
    }
    if (!response.ok) throw new Failure("model", `${url}: HTTP ${response.status} ${response.statusText}`);
    if (cache) await cache.put(url, response.clone()).catch(() => {});
  }
  return new Uint8Array(await response.arrayBuffer());
}

async function segment({ id, image, options }) {
  if (!session) throw new Failure("model", "no model is loaded");
  const started = performance.now();
  const timings = {};
  const gray = await decode(image, options);
  const { width, height } = gray;
  let u8;
  try {
    u8 = toUint8(gray.pixels, options.scaling);
  } catch (error) {
    throw new Failure("image", `${image.name || "image"}: ${error.message}`);
  }
  const grid = tileGrid(height, width, info.tile);
  const blender = new Blender(grid);
  const tile = info.tile, total = grid.origins.length, batch = Math.max(1, options.batchSize || 1);
  timings.decode = performance.now() - started;
  timings.preprocess = 0; timings.engine = 0; timings.blend = 0;
  for (let first = 0; first < total; first += batch) {
    await new Promise((resolve) => setTimeout(resolve, 0)); // let a "cancel" message in: onnxruntime's wasm run never yields
    if (cancelled.has(id)) throw new Failure("cancelled", "cancelled");
    let t = performance.now();
    const origins = grid.origins.slice(first, first + batch);
    const input = new Uint8Array(origins.length * tile * tile);
    origins.forEach(([y, x], k) => input.set(enhanceTile(extractTile(u8, width, height, y, x, tile), tile), k * tile * tile));
    timings.preprocess += performance.now() - t;
    t = performance.now();
    const output = await session.run({ [INPUT_NAME]: new ort.Tensor("uint8", input, [origins.length, 1, tile, tile]) });
    const maps = await output[OUTPUT_NAME].getData();
    timings.engine += performance.now() - t;
    checkMaps(maps, input.length);
    t = performance.now();
    origins.forEach(([y, x], k) => blender.add(maps.subarray(k * tile * tile, (k + 1) * tile * tile), y, x));
    timings.blend += performance.now() - t;
    self.postMessage({ id, type: "progress", done: first + origins.length, total });
  }
  let t = performance.now();
  const [labels, count] = labelsFromDistance(blender.result(), width, height, info.peak, info.fill);
  timings.postprocess = performance.now() - t;
  t = performance.now();
  const cells = cellTable(labels, width, height, count);
  timings.measure = performance.now() - t;
  timings.total = performance.now() - started;
  const seconds = Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, v / 1000]));
  const result = { labels, width, height, count, cells, image8: u8, tiles: total, frame: gray.frame, frames: gray.frames,
    pixelSizeUm: gray.pixelSizeUm, timings: seconds };
  return [result, [labels.buffer, u8.buffer]];
}

function checkMaps(maps, expected) {
  if (maps.length !== expected) throw new Failure("model", `the model returned ${maps.length} values for ${expected} pixels`);
  for (let i = 0; i < maps.length; i++) {
    const v = maps[i];
    if (!(v >= -OUTPUT_SLACK && v <= 1 + OUTPUT_SLACK)) {
      throw new Failure("model", `the model returned distance value ${v}; the contract is [0, 1]`);
    }
  }
}

/** A gray plane { pixels, width, height, frame, frames, pixelSizeUm } from a file's bytes or raw pixels. */
async function decode(image, options) {
  const maxPixels = options.maxPixels;
  const tooLarge = (w, h) => new Failure("too-large", `image is ${w} x ${h} = ${(w * h).toLocaleString("en")} pixels, more than the ${maxPixels.toLocaleString("en")} this page allows`);
  if (image.pixels) {
    const { width, height, pixels } = image;
    if (!(width > 0 && height > 0) || pixels.length !== width * height) {
      throw new Failure("image", `raw pixels: ${pixels.length} values do not make a ${width} x ${height} gray image`);
    }
    if (width * height > maxPixels) throw tooLarge(width, height);
    return { pixels, width, height, frame: 0, frames: 1, pixelSizeUm: null };
  }
  const bytes = new Uint8Array(image.buffer);
  if (isTiff(bytes) || (bytes.length >= 4 && (bytes[2] === 43 || bytes[3] === 43) && (bytes[0] === 0x49 || bytes[0] === 0x4d))) {
    try {
      const pages = tiffPages(image.buffer);
      const frame = options.frame || 0;
      if (frame < 0 || frame >= pages.length) throw new Failure("image", `frame ${frame} asked for, but the file has ${pages.length} (0..${pages.length - 1})`);
      const [w, h] = pageSize(pages[frame]);
      if (w * h > maxPixels) throw tooLarge(w, h);
      const page = await readTiffPage(pages[frame]);
      return { ...gray(page), frame, frames: pages.length, pixelSizeUm: page.pixelSizeUm };
    } catch (error) {
      throw error instanceof Failure ? error : new Failure("image", `${image.name}: not a readable TIFF (${error.message})`);
    }
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([bytes]), { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch {
    throw new Failure("image", `${image.name}: not a readable image (the page reads PNG, JPEG and TIFF)`);
  }
  if (bitmap.width * bitmap.height > maxPixels) throw tooLarge(bitmap.width, bitmap.height);
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d", { colorSpace: "srgb" });
  context.drawImage(bitmap, 0, 0);
  const rgba = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  return { ...gray({ pixels: rgba, width: bitmap.width, height: bitmap.height, samples: 4 }), frame: 0, frames: 1, pixelSizeUm: null };
}

/** One gray plane from 1, 3 or 4 samples per pixel (colour by BT.601 luma, alpha dropped, as the runtime). */
function gray({ pixels, width, height, samples }) {
  if (samples === 1) return { pixels, width, height };
  if (samples !== 3 && samples !== 4) throw new Failure("image", `image has ${samples} channels; the page reads gray or RGB(A) images`);
  let colour = false;
  for (let i = 0; i < width * height && !colour; i++) {
    const o = i * samples;
    colour = pixels[o] !== pixels[o + 1] || pixels[o] !== pixels[o + 2];
  }
  if (!colour) {
    const out = new pixels.constructor(width * height);
    for (let i = 0; i < out.length; i++) out[i] = pixels[i * samples];
    return { pixels: out instanceof Uint8ClampedArray ? new Uint8Array(out) : out, width, height };
  }
  const luma = rgbToGray(pixels, samples, width * height);
  return { pixels: luma instanceof Uint8ClampedArray ? new Uint8Array(luma) : luma, width, height };
}
