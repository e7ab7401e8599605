// samcell-rt GUI: upload, poll statuses, show the selected image with its cells and numbers.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { selected: null, frame: 0, view: { scale: 1, x: 0, y: 0 }, jobs: new Map() };
const METRIC_LABELS = {
  cells: "Cell count", mean_area_px: "Mean area (px)", median_area_px: "Median area (px)",
  confluency: "Confluency", mean_neighbours: "Mean neighbours", mean_area_um2: "Mean area (µm²)",
  diameter_px: "Cell diameter, estimated (px)", scale: "Resized for the model by",
};

async function api(path, options) {
  const response = await fetch(path, options);
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error(body?.error || response.statusText);
  return body;
}

async function upload(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const file of files) form.append("files", file);
  $("upload-error").hidden = true;
  try {
    const result = await api("/api/images", { method: "POST", body: form });
    if (result.rejected.length) showUploadError(result.rejected.join("; "));
  } catch (error) {
    showUploadError(error.message);
  }
  refreshJobs();
}

function showUploadError(message) {
  $("upload-error").textContent = message;
  $("upload-error").hidden = false;
}

async function refreshJobs() {
  const jobs = await api("/api/images");
  const list = $("jobs");
  for (const job of jobs) {
    const previous = state.jobs.get(job.id);
    state.jobs.set(job.id, job);
    let item = list.querySelector(`[data-id="${job.id}"]`);
    if (!item) {
      item = document.createElement("li");
      item.dataset.id = job.id;
      item.addEventListener("click", () => select(job.id));
      list.appendChild(item);
    }
    item.className = job.status + (state.selected === job.id ? " selected" : "");
    const count = job.status === "done" ? ` · ${Array.isArray(job.cells) ? job.cells.join("/") : job.cells} cells` : "";
    item.innerHTML = "";
    item.append(document.createTextNode(job.name + count));
    const status = document.createElement("span");
    status.className = "status";
    status.textContent = job.status;
    item.append(status);
    if (job.warnings?.length) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "⚠ check";
      badge.title = job.warnings.join("\n");
      item.append(badge);
      const message = document.createElement("span");
      message.className = "warn";
      message.textContent = job.warnings.join(" ");
      item.append(message);
    }
    if (job.status !== "processing") {
      const remove = document.createElement("button");
      remove.className = "remove";
      remove.title = "Remove this image and its results";
      remove.textContent = "×";
      remove.addEventListener("click", (event) => { event.stopPropagation(); removeJob(job.id); });
      item.append(remove);
    }
    if (job.error) {
      const message = document.createElement("span");
      message.className = "msg";
      message.textContent = job.error;
      item.append(message);
    }
    if (state.selected === null && job.status === "done") select(job.id);
    else if (state.selected === job.id && previous?.status !== "done" && job.status === "done") select(job.id);
  }
  showSummaryPlot(jobs);
  if (jobs.some((job) => job.status === "queued" || job.status === "processing")) setTimeout(refreshJobs, 400);
}

// Cells and confluency across the dropped images, redrawn when their numbers change.
let summaryKey = "";
function showSummaryPlot(jobs) {
  const done = jobs.filter((job) => job.status === "done");
  const key = done.map((job) => `${job.id}:${job.cells}`).join(",");
  const plot = $("summary-plot");
  if (done.length < 2) { plot.hidden = true; summaryKey = ""; return; }
  if (key === summaryKey) return;
  summaryKey = key;
  plot.onerror = () => { plot.hidden = true; };
  plot.onload = () => { plot.hidden = false; };
  plot.src = `/api/summary.png?t=${Date.now()}`;
}

// The count and confluency over a stack's frames (with its doubling time), under the numbers.
function showTimeline(id, frames, stamp) {
  const plot = $("timeline");
  if (frames < 2) { plot.hidden = true; plot.removeAttribute("src"); return; }
  plot.onerror = () => { plot.hidden = true; };
  plot.onload = () => { plot.hidden = false; };
  plot.src = `/api/images/${id}/timeline.png?t=${stamp}`;
}

async function removeJob(id) {
  await api(`/api/images/${id}`, { method: "DELETE" });
  state.jobs.delete(id);
  document.querySelector(`#jobs [data-id="${id}"]`)?.remove();
  if (state.selected === id) {
    state.selected = null;
    $("image").removeAttribute("src");
    $("overlay").removeAttribute("src");
    $("timeline").hidden = true;
    $("placeholder").hidden = false;
  }
}

async function select(id) {
  state.selected = id;
  document.querySelectorAll("#jobs li").forEach((li) => li.classList.toggle("selected", Number(li.dataset.id) === id));
  const job = state.jobs.get(id);
  if (!job || job.status !== "done") return;
  state.frame = Math.min(state.frame, job.frames - 1);
  $("frame-box").hidden = job.frames < 2;
  $("frame").max = job.frames - 1;
  const detail = await api(`/api/images/${id}?frame=${state.frame}`);
  $("peak").value = detail.peak;
  $("fill").value = detail.fill;
  showDetail(detail, true);
}

function showDetail(detail, fit) {
  const id = detail.id;
  const stamp = Date.now();
  $("placeholder").hidden = true;
  $("image").src = `/api/images/${id}/image.png?frame=${state.frame}`;
  $("overlay").src = `/api/images/${id}/overlay.png?frame=${state.frame}&mode=${$("mode").value}&t=${stamp}`;
  $("peak-value").textContent = Number(detail.peak).toFixed(2);
  $("fill-value").textContent = Number(detail.fill).toFixed(2);
  $("download-csv").href = `/api/images/${id}/download/cells?frame=${state.frame}`;
  $("download-tif").href = `/api/images/${id}/download/labels`;
  $("download-rois").href = `/api/images/${id}/download/rois`;
  $("download-geojson").href = `/api/images/${id}/download/geojson`;
  const rows = Object.entries(detail.metrics).map(([key, value]) =>
    `<tr><th>${METRIC_LABELS[key] || key}</th><td data-metric="${key}">${format(value)}</td></tr>`);
  $("metrics").tBodies[0].innerHTML = rows.join("");
  const columns = Object.keys(detail.cells);
  $("cells").tHead.innerHTML = "<tr>" + columns.map((c) => `<th>${c}</th>`).join("") + "</tr>";
  const count = columns.length ? detail.cells[columns[0]].length : 0;
  const body = [];
  for (let i = 0; i < count; i++) body.push("<tr>" + columns.map((c) => `<td>${format(detail.cells[c][i])}</td>`).join("") + "</tr>");
  $("cells").tBodies[0].innerHTML = body.join("");
  if (fit) $("image").onload = fitView;
  state.jobs.get(id).cells = detail.metrics.cells;
  showTimeline(id, detail.frames, stamp);
}

function format(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number" && !Number.isInteger(value)) return value.toPrecision(4);
  return String(value);
}

let thresholdTimer = null;
function thresholdsChanged() {
  $("peak-value").textContent = Number($("peak").value).toFixed(2);
  $("fill-value").textContent = Number($("fill").value).toFixed(2);
  clearTimeout(thresholdTimer);
  thresholdTimer = setTimeout(async () => {
    if (state.selected === null) return;
    const detail = await api(`/api/images/${state.selected}/thresholds?frame=${state.frame}`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ peak: Number($("peak").value), fill: Number($("fill").value) }),
    });
    showDetail(detail, false);
    refreshJobs();
  }, 150);
}

function applyView() {
  const { scale, x, y } = state.view;
  $("stage").style.transform = `translate(${x}px, ${y}px) scale(${scale})`;
}

function fitView() {
  const canvas = $("canvas"), image = $("image");
  const scale = Math.min(canvas.clientWidth / image.naturalWidth, canvas.clientHeight / image.naturalHeight);
  state.view = { scale, x: (canvas.clientWidth - image.naturalWidth * scale) / 2, y: (canvas.clientHeight - image.naturalHeight * scale) / 2 };
  applyView();
}

function setupViewer() {
  const canvas = $("canvas");
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const factor = event.deltaY < 0 ? 1.2 : 1 / 1.2;
    const rect = canvas.getBoundingClientRect();
    const px = event.clientX - rect.left, py = event.clientY - rect.top;
    const v = state.view;
    state.view = { scale: v.scale * factor, x: px - (px - v.x) * factor, y: py - (py - v.y) * factor };
    applyView();
  }, { passive: false });
  let drag = null;
  canvas.addEventListener("pointerdown", (e) => { drag = { x: e.clientX - state.view.x, y: e.clientY - state.view.y }; });
  window.addEventListener("pointerup", () => { drag = null; });
  window.addEventListener("pointermove", (e) => {
    if (!drag) return;
    state.view.x = e.clientX - drag.x;
    state.view.y = e.clientY - drag.y;
    applyView();
  });
  $("opacity").addEventListener("input", () => { $("overlay").style.opacity = $("opacity").value; });
  $("mode").addEventListener("change", () => state.selected !== null && select(state.selected));
  $("frame").addEventListener("change", () => { state.frame = Number($("frame").value); select(state.selected); });
  $("reset-view").addEventListener("click", fitView);
  $("peak").addEventListener("input", thresholdsChanged);
  $("fill").addEventListener("input", thresholdsChanged);
}

function setupDrop() {
  const drop = $("drop");
  $("files").addEventListener("change", (e) => { upload([...e.target.files]); e.target.value = ""; });
  for (const name of ["dragenter", "dragover"]) drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const name of ["dragleave", "drop"]) drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  drop.addEventListener("drop", (e) => upload([...e.dataTransfer.files]));
}

async function start() {
  setupDrop();
  setupViewer();
  const info = await api("/api/info");
  $("engine").textContent = `model ${info.model} ${info.version} · engine ${info.engine} (${info.precision})`;
  $("peak").value = info.peak;
  $("fill").value = info.fill;
  refreshJobs();
}

start();
