"""The GPU check's plan: which device calls a session makes, what each carries, and what it costs.

Each device call sends the working tree (tracked files, untracked files git does not ignore, and a
`shared/` folder inside the checkout) plus the paths named in `carry`, at most 64 MiB in all, and a
machine stays warm only ~30 s after a call. So the plan is computed from the tree's real size at
the moment it is asked for, and from package sizes recorded in gpu_plan.json (no download needed):

- call `main` carries nothing but the tree: torch on CUDA through samcell-rt's own pipeline;
- the onnxruntime-gpu payload, when staged (`gpu_stage.sh`), is cut into parts that fit beside
  the tree; the main call carries the first, staging-only calls the middle ones, and call `ort`
  (assemble, install, bench the CUDA engine) the last. That route is planned only when it needs at
  most `max_staging_calls` staging-only calls and the whole plan stays within `plan_limit_s`.

    python3 benchmarks/gpu_plan.py [--json]        # the dry run (exit 2 when the plan does not fit)
    python3 benchmarks/gpu_plan.py split PAYLOAD   # cut a payload into .gpu/parts/NN for this tree
    python3 benchmarks/gpu_plan.py budget main     # a call's work budget in seconds (for the scripts)
    python3 benchmarks/gpu_plan.py status          # on the device: which parts have arrived
    python3 benchmarks/gpu_plan.py assemble FILE   # on the device: the payload rebuilt, sha256 checked

Standard library only: it runs on a fresh clone, here and on the device.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

MIB = 1 << 20
SETTINGS = Path(__file__).with_name("gpu_plan.json")
STAGE_DIR = ".gpu"  # ignored (.gitignore): staged parts travel only when a call carries them
PAYLOAD = "onnxruntime-gpu"
MANIFEST = "manifest.json"
ENTRY = "bash benchmarks/gpu_check.sh --call"


@dataclass
class Call:
    """One device call: what it carries, what travels, and its estimated device seconds."""

    name: str
    command: str
    carry: list[str]
    carry_bytes: int
    travel_bytes: int
    seconds: float
    timeout_s: int


@dataclass
class Plan:
    tree_bytes: int
    tree_files: int
    capacity_bytes: int  # what one call may carry beside the tree, margin kept
    calls: list[Call] = field(default_factory=list)
    ort: str = ""  # why the onnxruntime-gpu route is in or out
    seconds: float = 0.0
    limit_s: float = 0.0
    problem: str = ""  # set when no plan fits: the dry run refuses

    @property
    def fits(self) -> bool:
        return not self.problem and self.seconds <= self.limit_s


def settings() -> dict:
    """gpu_plan.json: device limits, assumed times, recorded package sizes."""
    return json.loads(SETTINGS.read_text())


def tree_size(root: Path) -> tuple[int, int]:
    """(bytes, files) of what a call sends: tracked and untracked-not-ignored files, plus shared/."""
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    paths = {root / name for name in listed if name}
    shared = root / "shared"
    if shared.is_dir():
        paths.update(p for p in shared.rglob("*") if not p.is_dir())
    total = files = 0
    for path in paths:
        try:
            info = path.lstat()
        except FileNotFoundError:  # tracked but deleted here: it does not travel
            continue
        if not path.is_dir() or path.is_symlink():
            total, files = total + info.st_size, files + 1
    return total, files


def staged(root: Path) -> dict | None:
    """The manifest of parts `split` wrote, with each part's size as it is on disk now, or None."""
    manifests = sorted((root / STAGE_DIR / "parts").glob(f"*/{MANIFEST}"))
    if not manifests:
        return None
    manifest = json.loads(manifests[0].read_text())
    manifest["sizes"] = [sum(f.stat().st_size for f in (root / folder).iterdir() if f.name != MANIFEST)
                         if (root / folder).is_dir() else 0 for folder in manifest["folders"]]
    return manifest


def split_sizes(total: int, capacity: int) -> list[int]:
    """Part sizes when `total` bytes are cut into as few parts of at most `capacity` as possible."""
    count = math.ceil(total / capacity)
    return [min(capacity, total - i * capacity) for i in range(count)]


def plan(root: Path, config: dict | None = None) -> Plan:
    """The calls for this checkout as it is now; `problem` says why none fits."""
    config = config or settings()
    device = config["device"]
    tree, files = tree_size(root)
    room = (device["travel_limit_mib"] - device["margin_mib"]) * MIB
    result = Plan(tree, files, max(0, room - tree), limit_s=device["plan_limit_s"])
    if tree > room:
        result.problem = (f"the working tree travels {tree / MIB:.1f} MiB, over the {room / MIB:.0f} MiB a call may "
                          f"send ({device['travel_limit_mib']} MiB less a {device['margin_mib']} MiB margin): "
                          "ignore or remove untracked files, or shrink tracked ones")
        return result
    parts, result.ort = _ort_parts(root, config, result.capacity_bytes)
    calls = _calls(config, tree, parts)
    ort_total = _total(device, calls)
    if parts and ort_total > device["plan_limit_s"]:
        result.ort = (f"skipped: with onnxruntime-gpu the plan would take {ort_total / 60:.1f} min "
                      f"(limit {device['plan_limit_s'] / 60:.0f} min)")
        parts, calls = [], _calls(config, tree, [])
    result.calls, result.seconds = calls, _total(device, calls)
    if result.seconds > device["plan_limit_s"]:
        result.problem = (f"the main route alone is estimated at {result.seconds / 60:.1f} min, over the "
                          f"{device['plan_limit_s'] / 60:.0f} min limit: lower work_s.main in {SETTINGS.name}")
    return result


def _ort_parts(root: Path, config: dict, capacity: int) -> tuple[list[tuple[str, int]], str]:
    """(carry path, bytes) per onnxruntime-gpu part, and why the route is in or out."""
    package, limit = config["packages"][PAYLOAD], config["device"]["max_staging_calls"]
    manifest = staged(root)
    if capacity <= 0:
        return [], "skipped: the tree leaves nothing to carry beside it"
    if manifest is None:
        sizes = split_sizes(package["payload_bytes"], capacity)
        folders = [f"{STAGE_DIR}/parts/{i:02d}" for i in range(len(sizes))]
        source = (f"recorded payload {package['payload_bytes'] / MIB:.1f} MiB (not staged yet: run "
                  "benchmarks/gpu_stage.sh before these calls, then this dry run again)")
    else:
        sizes, folders = manifest["sizes"], manifest["folders"]
        source = f"staged payload {sum(sizes) / MIB:.1f} MiB"
        if manifest.get("sha256") is None or 0 in sizes:
            return [], f"skipped: {STAGE_DIR}/parts is incomplete; run benchmarks/gpu_stage.sh again"
        if max(sizes) > capacity:
            return [], (f"skipped: staged parts of up to {max(sizes) / MIB:.1f} MiB no longer fit beside this tree "
                        f"({capacity / MIB:.1f} MiB); run benchmarks/gpu_stage.sh again")
    staging_calls = max(0, len(sizes) - 2)
    if staging_calls > limit:
        return [], (f"skipped: {source} needs {len(sizes)} parts of {capacity / MIB:.1f} MiB, "
                    f"{staging_calls} staging-only calls (at most {limit}: each is a chance for the machine to go cold)")
    return list(zip(folders, sizes)), f"planned: {source} in {len(sizes)} parts, {staging_calls} staging-only calls"


def _calls(config: dict, tree: int, parts: list[tuple[str, int]]) -> list[Call]:
    """main (+ first part), staging calls (middle parts), ort (last part); seconds per call."""
    device, work = config["device"], config["work_s"]
    loads: list[tuple[str, list[tuple[str, int]]]] = [("main", parts[:1] if len(parts) > 1 else [])]
    loads += [("stage", [part]) for part in parts[1:-1]]
    if parts:
        loads.append(("ort", parts[-1:]))
    calls = []
    for index, (name, carried) in enumerate(loads):
        carry_bytes = sum(size for _, size in carried)
        travel = tree + carry_bytes
        wait = device["start_s"] if index == 0 else device["gap_s"]
        seconds = wait + travel / MIB / device["transfer_mib_per_s"] + work[name]
        calls.append(Call(name, f"{ENTRY} {name}", [path for path, _ in carried], carry_bytes, travel,
                          round(seconds, 1), int(work[name]) + 60))
    return calls


def _total(device: dict, calls: list[Call]) -> float:
    """Device seconds: every call, then the session's turn and the give-back."""
    return sum(call.seconds for call in calls) + device["gap_s"] + device["close_s"]


def describe(result: Plan, config: dict) -> str:
    """The dry run's text: one line per call, the onnxruntime-gpu decision, the total."""
    device = config["device"]
    limit = device["travel_limit_mib"]
    lines = [f"GPU check plan: tree {result.tree_bytes / MIB:.1f} MiB ({result.tree_files} files); each call sends "
             f"at most {limit} MiB, {device['margin_mib']} MiB kept spare -> "
             f"{result.capacity_bytes / MIB:.1f} MiB may be carried beside the tree"]
    for number, call in enumerate(result.calls, 1):
        carry = json.dumps(call.carry) if call.carry else "nothing"
        lines.append(f"  call {number}: {call.name:5s} carry {carry:24s} travels {call.travel_bytes / MIB:5.1f} MiB "
                     f"(spare {limit - call.travel_bytes / MIB:4.1f})  ~{call.seconds:5.0f} s  "
                     f"timeout_s {call.timeout_s}  command: {call.command}")
    lines.append(f"onnxruntime-gpu route: {result.ort}")
    lines.append("TensorRT-RTX: never carried (compute capability 9.0 on the lent H100/H200 cannot run its engines)")
    lines.append(f"estimated device time: {result.seconds:.0f} s = {result.seconds / 60:.1f} min (start "
                 f"{device['start_s']} s, {device['gap_s']} s between calls, {device['transfer_mib_per_s']} MiB/s, "
                 f"give-back {device['close_s']} s; limit {result.limit_s / 60:.0f} min)")
    if len(result.calls) > 1:
        lines.append(f"make the calls back to back (a machine stays warm {device['warm_after_call_s']} s); if a reply "
                     "after the first says warm: false, the parts sent before are gone: call give_back instead")
    if result.problem:
        lines.append(f"REFUSED: {result.problem}")
    return "\n".join(lines)


def split(payload: Path, root: Path, config: dict | None = None) -> dict:
    """Cut `payload` into .gpu/parts/NN/ sized for this tree; each folder gets the manifest."""
    result = plan(root, config)
    if result.problem or result.capacity_bytes <= 0:
        raise SystemExit(f"cannot stage: {result.problem or 'no room beside the tree'}")
    parts_dir = root / STAGE_DIR / "parts"
    shutil.rmtree(parts_dir, ignore_errors=True)
    data, digest = payload.read_bytes(), hashlib.sha256()
    digest.update(data)
    sizes = split_sizes(len(data), result.capacity_bytes)
    folders = [f"{STAGE_DIR}/parts/{i:02d}" for i in range(len(sizes))]
    manifest = {"payload": payload.name, "bytes": len(data), "sha256": digest.hexdigest(), "folders": folders}
    offset = 0
    for index, (folder, size) in enumerate(zip(folders, sizes)):
        (root / folder).mkdir(parents=True)
        (root / folder / f"{payload.name}.part{index:02d}").write_bytes(data[offset : offset + size])
        (root / folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
        offset += size
    return manifest


def assemble(root: Path, dest: Path | None = None) -> str:
    """Which staged parts are here (on the device: those carried so far); with `dest`, the payload
    rebuilt from them and its sha256 checked. Raises SystemExit when parts are missing or wrong."""
    manifest = staged(root)
    if manifest is None:
        raise SystemExit(f"no staged parts here ({STAGE_DIR}/parts/*/{MANIFEST})")
    here = [folder[-2:] for folder, size in zip(manifest["folders"], manifest["sizes"]) if size]
    status = f"parts here: {' '.join(here) or 'none'} of {len(manifest['folders'])}"
    if dest is None:
        return status
    if len(here) < len(manifest["folders"]):
        raise SystemExit(f"{status}: the machine went cold between calls, or a call was skipped")
    digest = hashlib.sha256()
    with open(dest, "wb") as out:
        for index, folder in enumerate(manifest["folders"]):
            data = (root / folder / f"{manifest['payload']}.part{index:02d}").read_bytes()
            digest.update(data)
            out.write(data)
    if digest.hexdigest() != manifest["sha256"]:
        raise SystemExit(f"{status}, but the rebuilt payload's sha256 differs from the staged one")
    return f"{status}; payload rebuilt and checked ({manifest['bytes'] / MIB:.1f} MiB)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", nargs="?", default="dry-run", choices=("dry-run", "split", "budget", "status", "assemble"))
    parser.add_argument("arg", nargs="?", help="split: the payload file; budget: the call name; assemble: where to "
                        "write the payload")
    parser.add_argument("--json", action="store_true", help="dry run as JSON")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args(argv)
    if args.action == "budget":
        print(settings()["work_s"][args.arg])
        return 0
    if args.action in ("status", "assemble"):
        print(assemble(args.root, Path(args.arg) if args.arg else None))
        return 0
    if args.action == "split":
        manifest = split(Path(args.arg), args.root)
        print(f"staged {manifest['bytes'] / MIB:.1f} MiB in {len(manifest['folders'])} parts")
    result = plan(args.root)
    if args.json:
        print(json.dumps({**asdict(result), "fits": result.fits}, indent=1))
    else:
        print(describe(result, settings()))
    return 0 if result.fits else 2


if __name__ == "__main__":
    sys.exit(main())
