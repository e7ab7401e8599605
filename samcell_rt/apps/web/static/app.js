// The page: a queue of images, each segmented through the samcell.js API only, its result shown as
// an overlay, a count and a cell table with downloads. One image runs at a time; a failed image says
// why and the queue goes on.
import { cellsCsv, labelsTiff, loadModel, outlinesGeoJson } from "./samcell.js";

const $ = (id) => document.getElementById(id);
const queue = [];
let model = null, running = false, modelFailed = null;

async function start() {
  try {
    const site = await (await fetch("site.json", { cache: "no-cache" })).json();
    model = await loadModel(`${site.model}?sha256=${site.model_sha256.slice(0, 16)}`);
    const { info, backend, threads, notes } = model;
    $("model-status").dataset.state = "ready";
    $("model-status").textContent = `Model ${info.name} v${info.version} (peak ${info.peak}, fill ${info.fill}) on ${backend}, ${threads} thread${threads > 1 ? "s" : ""}.`;
    $("notes").textContent = notes.join(" ");
  } catch (error) {
    modelFailed = error.message;
    $("model-status").dataset.state = "error";
    $("model-status").textContent = `The model failed to load: ${error.message}`;
  }
  pump();
}

function add(files) {
  for (const file of files) {
    const item = { file, state: "queued", frame: Number($("frame").value) || 0, scaling: $("scaling").value };
    item.li = document.createElement("li");
    item.li.innerHTML = `<button type="button">cancel</button><div class="name"></div><div class="status">queued</div><progress max="1" value="0"></progress>`;
    item.li.querySelector(".name").textContent = file.name;
    item.li.querySelector("button").onclick = (event) => { event.stopPropagation(); cancel(item); };
    item.li.onclick = () => item.result && show(item);
    $("queue").append(item.li);
    queue.push(item);
  }
  pump();
}

function setState(item, state, text) {
  item.state = state;
  item.li.dataset.state = state;
  item.li.querySelector(".status").textContent = text;
  item.li.querySelector(".status").className = `status${state === "error" ? " error" : ""}`;
  if (state !== "queued" && state !== "running") item.li.querySelector("button").remove();
}

function cancel(item) {
  if (item.state === "queued") setState(item, "cancelled", "cancelled");
  else item.controller?.abort();
}

async function pump() {
  if (running || (!model && !modelFailed)) return;
  const item = queue.find((q) => q.state === "queued");
  if (!item) return;
  running = true;
  if (modelFailed) setState(item, "error", `not segmented: the model failed to load (${modelFailed})`);
  else await run(item);
  running = false;
  pump();
}

async function run(item) {
  setState(item, "running", "reading…");
  item.controller = new AbortController();
  const bar = item.li.querySelector("progress");
  try {
    const started = performance.now();
    item.result = await model.segment(item.file, {
      frame: item.frame, scaling: item.scaling, pixelSizeUm: Number($("pixel-size").value) || null, signal: item.controller.signal,
      onProgress: (done, total) => { bar.max = total; bar.value = done; item.li.querySelector(".status").textContent = `tile ${done} of ${total}`; },
    });
    const r = item.result;
    setState(item, "done", `${r.count} cells · ${((performance.now() - started) / 1000).toFixed(1)} s · ${r.tiles} tiles${r.frames > 1 ? ` · frame ${r.frame} of ${r.frames}` : ""}`);
    show(item);
  } catch (error) {
    setState(item, error.kind === "cancelled" ? "cancelled" : "error", error.kind === "cancelled" ? "cancelled" : error.message);
  }
}

function show(item) {
  const r = item.result;
  for (const q of queue) q.li.classList.toggle("shown", q === item);
  $("result").hidden = false;
  $("result-title").textContent = item.file.name;
  const size = r.pixelSizeUm ? ` · pixel size ${r.pixelSizeUm.toPrecision(4)} µm` : "";
  $("summary").textContent = `${r.count} cells · ${r.width} x ${r.height} px · ${r.tiles} tiles · ${r.timings.total.toFixed(1)} s (model ${r.timings.engine.toFixed(1)} s, ${r.backend}, ${r.threads} thread${r.threads > 1 ? "s" : ""})${size}`;
  const stem = item.file.name.replace(/\.[^.]+$/, "");
  link($("dl-tiff"), labelsTiff(r), `${stem}_labels.tif`);
  link($("dl-csv"), new Blob([cellsCsv(r)], { type: "text/csv" }), `${stem}_cells.csv`);
  link($("dl-geojson"), new Blob([JSON.stringify(outlinesGeoJson(r))], { type: "application/geo+json" }), `${stem}_outlines.geojson`);
  drawOverlay(r);
  fillTable(r.cells);
}

function link(anchor, blob, name) {
  if (anchor.href) URL.revokeObjectURL(anchor.href);
  anchor.href = URL.createObjectURL(blob);
  anchor.download = name;
}

function colour(id) {
  const hue = (id * 137.508) % 360; // golden angle: neighbouring ids get distant hues
  const c = (1 - Math.abs(2 * 0.55 - 1)) * 0.9, x = c * (1 - Math.abs(((hue / 60) % 2) - 1)), m = 0.55 - c / 2;
  const [r, g, b] = hue < 60 ? [c, x, 0] : hue < 120 ? [x, c, 0] : hue < 180 ? [0, c, x] : hue < 240 ? [0, x, c] : hue < 300 ? [x, 0, c] : [c, 0, x];
  return [(r + m) * 255, (g + m) * 255, (b + m) * 255];
}

function drawOverlay({ labels, image8, width, height }) {
  const canvas = $("overlay");
  canvas.width = width; canvas.height = height;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(width, height);
  for (let y = 0, p = 0; y < height; y++) {
    for (let x = 0; x < width; x++, p++) {
      const v = image8[p], id = labels[p], o = 4 * p;
      pixels.data[o + 3] = 255;
      if (!id) { pixels.data[o] = pixels.data[o + 1] = pixels.data[o + 2] = v; continue; }
      const edge = x === 0 || y === 0 || x === width - 1 || y === height - 1 || labels[p - 1] !== id || labels[p + 1] !== id
        || labels[p - width] !== id || labels[p + width] !== id;
      const [r, g, b] = colour(id), a = edge ? 1 : 0.35;
      pixels.data[o] = r * a + v * (1 - a); pixels.data[o + 1] = g * a + v * (1 - a); pixels.data[o + 2] = b * a + v * (1 - a);
    }
  }
  context.putImageData(pixels, 0, 0);
}

function fillTable(cells) {
  const columns = cells.length ? Object.keys(cells[0]) : ["id"];
  const head = document.createElement("tr");
  for (const c of columns) head.append(Object.assign(document.createElement("th"), { textContent: c.replace(/_um2?$/, (u) => (u === "_um2" ? " (µm²)" : " (µm)")) }));
  $("cells").tHead.replaceChildren(head);
  const rows = cells.map((cell) => {
    const tr = document.createElement("tr");
    for (const c of columns) {
      const v = cell[c];
      tr.append(Object.assign(document.createElement("td"), { textContent: v === null ? "" : Number.isInteger(v) ? v : v.toFixed(2) }));
    }
    return tr;
  });
  $("cells").tBodies[0].replaceChildren(...rows);
}

$("files").addEventListener("change", (event) => { add([...event.target.files]); event.target.value = ""; });
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => { event.preventDefault(); drop.classList.remove("over"); add([...event.dataTransfer.files]); });
start();
