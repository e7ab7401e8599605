// A small TIFF reader and writer, enough for microscope frames: classic TIFF, strips or tiles,
// uncompressed, LZW, Deflate or PackBits, predictor 2, 8/16-bit unsigned or 32-bit float samples,
// one or several pages (frames). The writer makes the uncompressed one-page label images the page
// offers for download. Written for this page; no code from other TIFF libraries.

const TAG = {
  width: 256, height: 257, bits: 258, compression: 259, photometric: 262, description: 270, stripOffsets: 273,
  samples: 277, rowsPerStrip: 278, stripCounts: 279, xResolution: 282, planar: 284, resolutionUnit: 296,
  predictor: 317, tileWidth: 322, tileLength: 323, tileOffsets: 324, tileCounts: 325, sampleFormat: 339,
};
const TYPE_SIZE = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8 };
const MICROSCOPE_UM = [0.005, 20.0]; // plausible micrometres per pixel (runtime/io.py)

export class TiffError extends Error {}

export function isTiff(bytes) {
  return bytes.length >= 4 && ((bytes[0] === 0x49 && bytes[1] === 0x49 && bytes[2] === 42 && bytes[3] === 0)
    || (bytes[0] === 0x4d && bytes[1] === 0x4d && bytes[2] === 0 && bytes[3] === 42));
}

/** The pages of a TIFF (their tags, nothing decoded yet). */
export function tiffPages(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length >= 4 && (bytes[2] === 43 || bytes[3] === 43)) throw new TiffError("BigTIFF files are not supported in the page");
  if (!isTiff(bytes)) throw new TiffError("not a TIFF file");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const little = bytes[0] === 0x49;
  const pages = [];
  const seen = new Set();
  for (let offset = view.getUint32(4, little); offset && !seen.has(offset); offset = next(view, offset, little)) {
    if (offset + 2 > bytes.length) throw new TiffError("truncated file (a page lies past its end)");
    seen.add(offset);
    pages.push({ tags: readTags(view, offset, little), view, little });
  }
  if (!pages.length) throw new TiffError("no pages");
  return pages;
}

function next(view, offset, little) {
  const end = offset + 2 + view.getUint16(offset, little) * 12;
  if (end + 4 > view.byteLength) throw new TiffError("truncated file (a page's entries lie past its end)");
  return view.getUint32(end, little);
}

function readTags(view, offset, little) {
  const tags = {};
  const count = view.getUint16(offset, little);
  for (let i = 0; i < count; i++) {
    const entry = offset + 2 + i * 12;
    if (entry + 12 > view.byteLength) throw new TiffError("truncated file");
    const tag = view.getUint16(entry, little), type = view.getUint16(entry + 2, little);
    const n = view.getUint32(entry + 4, little), size = (TYPE_SIZE[type] || 1) * n;
    const at = size <= 4 ? entry + 8 : view.getUint32(entry + 8, little);
    if (at + size > view.byteLength) throw new TiffError(`truncated file (tag ${tag} lies past its end)`);
    tags[tag] = readValues(view, at, type, n, little);
  }
  return tags;
}

function readValues(view, at, type, n, little) {
  if (type === 2) return new TextDecoder("latin1").decode(new Uint8Array(view.buffer, view.byteOffset + at, n));
  const values = [];
  for (let i = 0; i < n; i++) {
    if (type === 3 || type === 8) values.push(view.getUint16(at + 2 * i, little));
    else if (type === 4 || type === 9 || type === 13) values.push(view.getUint32(at + 4 * i, little));
    else if (type === 5) values.push([view.getUint32(at + 8 * i, little), view.getUint32(at + 8 * i + 4, little)]);
    else if (type === 11) values.push(view.getFloat32(at + 4 * i, little));
    else if (type === 12) values.push(view.getFloat64(at + 8 * i, little));
    else values.push(view.getUint8(at + i));
  }
  return values;
}

const one = (tags, tag, fallback) => (tags[tag] === undefined ? fallback : tags[tag][0]);

/** A page's [width, height] from its tags (nothing decoded: size limits are checked before decoding). */
export function pageSize({ tags }) {
  const width = one(tags, TAG.width), height = one(tags, TAG.height);
  if (!width || !height) throw new TiffError("a page has no width or height");
  return [width, height];
}

/** Decode one page to { pixels (Uint8Array, Uint16Array or Float32Array), width, height, samples, pixelSizeUm }. */
export async function readTiffPage(page) {
  const { tags, view, little } = page;
  const [width, height] = pageSize(page);
  const samples = one(tags, TAG.samples, 1), bits = one(tags, TAG.bits, 8), format = one(tags, TAG.sampleFormat, 1);
  const compression = one(tags, TAG.compression, 1), predictor = one(tags, TAG.predictor, 1);
  const kind = format === 3 && bits === 32 ? Float32Array : format === 1 && bits === 8 ? Uint8Array
    : format === 1 && bits === 16 ? Uint16Array : null;
  if (!kind) throw new TiffError(`${bits}-bit ${format === 3 ? "float" : format === 2 ? "signed" : "unsigned"} samples are not supported in the page (8 or 16-bit unsigned, 32-bit float)`);
  if (samples > 1 && one(tags, TAG.planar, 1) !== 1) throw new TiffError("planar (separate) colour planes are not supported in the page");
  if (![1, 2].includes(predictor)) throw new TiffError(`predictor ${predictor} is not supported in the page`);
  const tiled = tags[TAG.tileOffsets] !== undefined;
  const blockW = tiled ? one(tags, TAG.tileWidth) : width;
  const blockH = tiled ? one(tags, TAG.tileLength) : Math.min(one(tags, TAG.rowsPerStrip, height), height);
  const offsets = tags[tiled ? TAG.tileOffsets : TAG.stripOffsets], counts = tags[tiled ? TAG.tileCounts : TAG.stripCounts];
  if (!offsets || !counts) throw new TiffError("a page has no image data offsets");
  const bytesPer = bits / 8, across = Math.ceil(width / blockW);
  const pixels = new kind(width * height * samples);
  for (let b = 0; b < offsets.length; b++) {
    if (offsets[b] + counts[b] > view.byteLength) throw new TiffError("truncated file (image data lies past its end)");
    const raw = new Uint8Array(view.buffer, view.byteOffset + offsets[b], counts[b]);
    const rows = tiled ? blockH : Math.min(blockH, height - b * blockH);
    const expected = blockW * rows * samples * bytesPer;
    const data = await decompress(raw, compression, expected);
    if (data.length < expected) throw new TiffError("truncated or damaged image data");
    const values = toValues(data, kind, expected / bytesPer, little);
    if (predictor === 2) undoPredictor(values, blockW * samples, rows, samples, bits);
    const y0 = tiled ? Math.floor(b / across) * blockH : b * blockH, x0 = tiled ? (b % across) * blockW : 0;
    for (let r = 0; r < rows && y0 + r < height; r++) {
      const cols = Math.min(blockW, width - x0) * samples;
      pixels.set(values.subarray(r * blockW * samples, r * blockW * samples + cols), ((y0 + r) * width + x0) * samples);
    }
  }
  return { pixels, width, height, samples, pixelSizeUm: pixelSize(tags) };
}

function toValues(data, kind, count, little) {
  if (kind === Uint8Array) return data.subarray(0, count);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out = new kind(count);
  for (let i = 0; i < count; i++) out[i] = kind === Uint16Array ? view.getUint16(2 * i, little) : view.getFloat32(4 * i, little);
  return out;
}

function undoPredictor(values, rowLength, rows, samples, bits) {
  if (bits === 32) throw new TiffError("predictor 2 on float samples is not supported in the page");
  const mask = bits === 8 ? 0xff : 0xffff;
  for (let r = 0; r < rows; r++) {
    const start = r * rowLength;
    for (let i = samples; i < rowLength; i++) values[start + i] = (values[start + i] + values[start + i - samples]) & mask;
  }
}

async function decompress(raw, compression, expected) {
  if (compression === 1) return raw;
  if (compression === 5) return lzw(raw, expected);
  if (compression === 32773) return packBits(raw, expected);
  if (compression === 8 || compression === 32946) {
    try {
      const stream = new Blob([raw]).stream().pipeThrough(new DecompressionStream("deflate"));
      return new Uint8Array(await new Response(stream).arrayBuffer());
    } catch (error) {
      throw new TiffError(`damaged Deflate data (${error.message})`);
    }
  }
  throw new TiffError(`compression ${compression} is not supported in the page (none, LZW, Deflate, PackBits)`);
}

/** TIFF LZW (MSB-first codes, 9 to 12 bits, early change). Every table string sits in the output
 * already, so an entry is kept as (start, length) into it. */
function lzw(input, expected) {
  const out = new Uint8Array(expected);
  const start = new Int32Array(4096), length = new Int32Array(4096);
  let op = 0, bit = 0, width = 9, next = 258, prev = -1, prevStart = 0, prevLength = 0;
  const total = input.length * 8;
  while (bit + width <= total && op < expected) {
    let code = 0;
    for (let i = 0; i < width; i++, bit++) code = (code << 1) | ((input[bit >> 3] >> (7 - (bit & 7))) & 1);
    if (code === 257) break;
    if (code === 256) { width = 9; next = 258; prev = -1; continue; }
    const here = op;
    if (code < 256) {
      out[op++] = code;
    } else if (code < next && prev >= 0) {
      const n = Math.min(length[code], expected - op);
      out.copyWithin(op, start[code], start[code] + n);
      op += n;
    } else if (code === next && prev >= 0) {
      const n = Math.min(prevLength, expected - op);
      out.copyWithin(op, prevStart, prevStart + n);
      op += n;
      if (op < expected) out[op++] = out[prevStart];
    } else {
      throw new TiffError("damaged LZW data");
    }
    if (prev >= 0 && next < 4096) {
      start[next] = prevStart;
      length[next] = prevLength + 1;
      next++;
      if (next >= (1 << width) - 1 && width < 12) width++;
    }
    prev = code; prevStart = here; prevLength = op - here;
  }
  return out.subarray(0, op);
}

function packBits(input, expected) {
  const out = new Uint8Array(expected);
  let ip = 0, op = 0;
  while (ip < input.length && op < expected) {
    const n = (input[ip++] << 24) >> 24;
    if (n >= 0) { out.set(input.subarray(ip, ip + n + 1).subarray(0, expected - op), op); op += n + 1; ip += n + 1; }
    else if (n !== -128) { out.fill(input[ip++], op, Math.min(expected, op + 1 - n)); op += 1 - n; }
  }
  return out.subarray(0, Math.min(op, expected));
}

/** Micrometres per pixel from the resolution tags, as the runtime reads them (ImageJ's micron unit,
 * or inch / centimetre resolution units), when plausible for a microscope; else null. */
function pixelSize(tags) {
  const res = tags[TAG.xResolution];
  if (!res || !res[0][0]) return null;
  const [num, den] = res[0];
  const description = typeof tags[TAG.description] === "string" ? tags[TAG.description] : "";
  let um = null;
  if (/^ImageJ=/m.test(description) && /^unit=(micron|um|\u00b5m)\s*$/m.test(description)) um = den / num;
  else {
    const perUnit = { 2: 25400, 3: 10000 }[one(tags, TAG.resolutionUnit, 0)];
    if (perUnit) um = (perUnit * den) / num;
  }
  return um !== null && um >= MICROSCOPE_UM[0] && um <= MICROSCOPE_UM[1] ? um : null;
}

/** An uncompressed one-page little-endian TIFF of 16-bit (or 32-bit) unsigned labels. */
export function writeTiff(labels, width, height) {
  const bits = labels instanceof Uint32Array ? 32 : 16;
  const entries = [[TAG.width, 4, width], [TAG.height, 4, height], [TAG.bits, 3, bits], [TAG.compression, 3, 1],
    [TAG.photometric, 3, 1], [TAG.stripOffsets, 4, 0], [TAG.samples, 3, 1], [TAG.rowsPerStrip, 4, height],
    [TAG.stripCounts, 4, labels.byteLength], [TAG.sampleFormat, 3, 1]];
  const ifd = 8, data = ifd + 2 + entries.length * 12 + 4;
  entries[5][2] = data;
  const buffer = new ArrayBuffer(data + labels.byteLength);
  const view = new DataView(buffer);
  view.setUint16(0, 0x4949); view.setUint16(2, 42, true); view.setUint32(4, ifd, true);
  view.setUint16(ifd, entries.length, true);
  entries.forEach(([tag, type, value], i) => {
    const at = ifd + 2 + i * 12;
    view.setUint16(at, tag, true); view.setUint16(at + 2, type, true); view.setUint32(at + 4, 1, true);
    if (type === 3) view.setUint16(at + 8, value, true); else view.setUint32(at + 8, value, true);
  });
  const copy = labels instanceof Uint32Array ? new Uint32Array(labels) : new Uint16Array(labels);
  new Uint8Array(buffer, data).set(new Uint8Array(copy.buffer)); // typed arrays are little-endian on every browser platform
  return new Uint8Array(buffer);
}
