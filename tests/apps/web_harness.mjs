// Runs the page's pipeline.js under Node on raw arrays written by tests/apps/test_web_pipeline.py:
// node web_harness.mjs PIPELINE_JS JOB_JSON. Each job names its op, its raw input files and where to write.
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [pipelinePath, jobPath] = process.argv.slice(2);
const p = await import(pathToFileURL(pipelinePath).href);
const tiff = await import(new URL("tiff.js", pathToFileURL(pipelinePath)).href);
const job = JSON.parse(readFileSync(jobPath, "utf8"));
const load = (file, Type) => {
  const buffer = readFileSync(file);
  return new Type(buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength));
};
const save = (file, array) => writeFileSync(file, Buffer.from(array.buffer, array.byteOffset, array.byteLength));
const { width, height } = job;

if (job.op === "enhance") {
  const tiles = load(job.input, Uint8Array), size = job.tile, out = new Uint8Array(tiles.length);
  for (let k = 0; k < tiles.length / (size * size); k++) {
    out.set(p.enhanceTile(tiles.subarray(k * size * size, (k + 1) * size * size), size), k * size * size);
  }
  save(job.output, out);
} else if (job.op === "to_uint8") {
  save(job.output, p.toUint8(load(job.input, { uint16: Uint16Array, float32: Float32Array }[job.dtype]), job.scaling));
} else if (job.op === "tiles") {
  const image = load(job.input, Uint8Array), grid = p.tileGrid(height, width);
  const out = new Uint8Array(grid.origins.length * 256 * 256);
  grid.origins.forEach(([y, x], k) => out.set(p.extractTile(image, width, height, y, x), k * 65536));
  save(job.output, out);
} else if (job.op === "blend") {
  const maps = load(job.input, Float32Array), grid = p.tileGrid(height, width), blender = new p.Blender(grid);
  grid.origins.forEach(([y, x], k) => blender.add(maps.subarray(k * 65536, (k + 1) * 65536), y, x));
  save(job.output, blender.result());
} else if (job.op === "labels") {
  const distance = load(job.input, Float32Array);
  const [labels, count] = p.labelsFromDistance(distance, width, height, job.peak, job.fill);
  save(job.output, Int32Array.from(labels));
  const rings = Object.fromEntries(p.outlines(labels, width, height, count));
  writeFileSync(job.table, JSON.stringify({ cells: p.cellTable(labels, width, height, count), rings }));
} else if (job.op === "tiff") {
  const found = {};
  for (const file of job.files) {
    const bytes = readFileSync(file);
    const pages = tiff.tiffPages(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    const last = await tiff.readTiffPage(pages[pages.length - 1]);
    save(`${file}.bin`, last.pixels);
    found[file] = { pages: pages.length, width: last.width, height: last.height, samples: last.samples, um: last.pixelSizeUm };
  }
  writeFileSync(job.output, JSON.stringify(found));
  writeFileSync(job.labels16, tiff.writeTiff(new Uint16Array([0, 1, 2, 3, 4, 65535]), 3, 2));
  writeFileSync(job.labels32, tiff.writeTiff(new Uint32Array([0, 70000]), 1, 2));
}
