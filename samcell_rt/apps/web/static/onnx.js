// The samcell-rt model contract (runtime/contract.py), read in the page: the metadata every model
// carries, parsed straight from the ONNX file's protobuf without a protobuf library (only the
// top-level fields are walked; the graph is skipped by its length).

export const INPUT_NAME = "tiles";
export const OUTPUT_NAME = "distance";
export const OUTPUT_SLACK = 1e-3;
const PREPROCESS = "reference-v1";
const REQUIRED = {
  name: "samcell.model_name", version: "samcell.version", tile: "samcell.tile", peak: "samcell.peak_threshold",
  fill: "samcell.fill_threshold", sourceSha256: "samcell.source_sha256", preprocess: "samcell.preprocess",
};
const METADATA_FIELD = 14; // ModelProto.metadata_props: StringStringEntryProto { key = 1; value = 2 }

export class ModelContractError extends Error {}

function varint(bytes, at) {
  let value = 0, scale = 1, b;
  do {
    if (at >= bytes.length) throw new ModelContractError("not an ONNX model (its protobuf ends inside a number)");
    b = bytes[at++];
    value += (b & 0x7f) * scale;
    scale *= 128;
  } while (b & 0x80);
  return [value, at];
}

/** Walk one protobuf message, calling visit(field, bytes) for every length-delimited field. */
function walk(bytes, visit) {
  let at = 0;
  while (at < bytes.length) {
    let key;
    [key, at] = varint(bytes, at);
    const field = Math.floor(key / 8), wire = key % 8;
    if (wire === 0) [, at] = varint(bytes, at);
    else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else if (wire === 2) {
      let length;
      [length, at] = varint(bytes, at);
      if (at + length > bytes.length) throw new ModelContractError("not an ONNX model (a field runs past the end)");
      visit(field, bytes.subarray(at, at + length));
      at += length;
    } else throw new ModelContractError(`not an ONNX model (protobuf wire type ${wire})`);
  }
}

/** The metadata props of an ONNX model file. */
export function readProps(bytes) {
  const props = {};
  const text = new TextDecoder();
  walk(bytes, (field, entry) => {
    if (field !== METADATA_FIELD) return;
    let key = "", value = "";
    walk(entry, (f, b) => { if (f === 1) key = text.decode(b); else if (f === 2) value = text.decode(b); });
    props[key] = value;
  });
  return props;
}

/** What the page needs to know about a model, checked as ModelInfo.from_props checks it. */
export function modelInfo(bytes) {
  const props = readProps(bytes);
  const missing = Object.values(REQUIRED).filter((key) => !(key in props));
  if (missing.length) throw new ModelContractError(`not a samcell-rt model: metadata lacks ${missing.join(", ")}`);
  const info = Object.fromEntries(Object.entries(REQUIRED).map(([field, key]) => [field, props[key]]));
  info.tile = Number(info.tile);
  info.peak = Number(info.peak);
  info.fill = Number(info.fill);
  if (![info.tile, info.peak, info.fill].every(Number.isFinite)) throw new ModelContractError("malformed metadata value");
  if (info.preprocess !== PREPROCESS) throw new ModelContractError(`preprocess ${info.preprocess} is not supported (expected ${PREPROCESS})`);
  if (info.tile < 64 || info.tile % 8) throw new ModelContractError(`tile size ${info.tile} is not supported (at least 64, a multiple of 8)`);
  if (!(info.peak >= 0 && info.peak <= 1 && info.fill >= 0 && info.fill <= 1)) {
    throw new ModelContractError(`thresholds must lie in [0, 1] (peak ${info.peak}, fill ${info.fill})`);
  }
  return info;
}
