"""The onnxruntime-web files the page needs, pinned by version and npm integrity, kept in the user cache.

They are not shipped in the package: the wasm binaries alone are 44 MB (plain and WebGPU builds),
which would take the tracked tree past its 48.5 MiB budget and every wheel with it. They are fetched
once, at `samcell-rt web` time, as the npm registry's tarball of the pinned version; the tarball is
checked against the registry's sha512 integrity before anything is unpacked, and only the files the
page loads are kept, each with its sha256 recorded so that a later build notices a damaged cache
and fetches again. An offline machine can be given the same tarball (`--runtime-tarball`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ...cache import cache_dir
from ...errors import DownloadError
from ...runtime.contract import file_sha256


@dataclass(frozen=True)
class NpmPackage:
    """One npm package version: where its tarball is, the registry's integrity string, the files kept."""

    name: str
    version: str
    integrity: str  # "sha512-<base64>", as the registry's dist.integrity gives it
    files: tuple[str, ...]  # paths inside the tarball's package/ folder

    @property
    def tarball_url(self) -> str:
        return f"https://registry.npmjs.org/{self.name}/-/{self.name}-{self.version}.tgz"

    @property
    def folder(self) -> Path:
        return cache_dir() / "web" / f"{self.name}-{self.version}"


ORT_WEB = NpmPackage(
    "onnxruntime-web", "1.31.1",
    "sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw==",
    # wasm build (SIMD, threads) for every browser, and the WebGPU build, loaded only where WebGPU works
    ("dist/ort.wasm.min.mjs", "dist/ort-wasm-simd-threaded.mjs", "dist/ort-wasm-simd-threaded.wasm",
     "dist/ort.webgpu.min.mjs", "dist/ort-wasm-simd-threaded.asyncify.mjs",
     "dist/ort-wasm-simd-threaded.asyncify.wasm", "package.json"),
)
_MANIFEST = "files.json"


def runtime_files(package: NpmPackage = ORT_WEB, tarball: Path | None = None) -> Path:
    """The cache folder holding the package's kept files (flat), fetched and unpacked on first use.

    `tarball` is a local copy of the registry's tarball, used instead of downloading; it must
    match the pinned integrity just the same."""
    if _intact(package.folder):
        return package.folder
    with tempfile.TemporaryDirectory(prefix="samcell-web-") as scratch:
        source = tarball or _download(package, Path(scratch) / "package.tgz")
        check_integrity(source, package)
        staging = package.folder.with_name(f".{package.folder.name}.{Path(scratch).name}")
        try:
            _unpack(source, package, staging)
            if package.folder.exists():
                shutil.rmtree(package.folder)
            staging.replace(package.folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return package.folder


def check_integrity(path: Path, package: NpmPackage) -> None:
    """Raise DownloadError unless the tarball's sha512 is the pinned npm integrity."""
    algorithm, _, expected = package.integrity.partition("-")
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    found = base64.b64encode(digest.digest()).decode()
    if found != expected:
        raise DownloadError(f"{path}: {algorithm} {found} is not the pinned integrity of {package.name} "
                            f"{package.version} ({expected}); not using it")


def _download(package: NpmPackage, dest: Path) -> Path:
    from ...registry import download

    download(package.tarball_url, dest, sha256=None)
    return dest


def _unpack(tarball: Path, package: NpmPackage, folder: Path) -> None:
    """Extract the kept files (by exact name, nothing else) flat into `folder`, with a sha256 manifest."""
    folder.mkdir(parents=True)
    wanted = {f"package/{name}": Path(name).name for name in package.files}
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            if member.name in wanted and member.isfile():
                with archive.extractfile(member) as src, open(folder / wanted.pop(member.name), "wb") as dst:
                    shutil.copyfileobj(src, dst)
    if wanted:
        raise DownloadError(f"{tarball}: {package.name} {package.version} lacks {', '.join(sorted(wanted))}")
    manifest = {name: file_sha256(folder / name) for name in sorted(p.name for p in folder.iterdir())}
    (folder / _MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def _intact(folder: Path) -> bool:
    """Whether every file the manifest lists is there with its recorded sha256."""
    try:
        manifest = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
        return all(file_sha256(folder / name) == digest for name, digest in manifest.items())
    except (OSError, ValueError, AttributeError):
        return False
