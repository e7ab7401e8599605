"""Where model names lead: a path on disk, or a model shipped with samcell-rt."""

from __future__ import annotations

from pathlib import Path

from .errors import ModelError

SHIPPED_DIR = Path(__file__).parent / "models"


def shipped_models() -> dict[str, Path]:
    """Models shipped inside the package, by name (file stem)."""
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.onnx"))}


def resolve_model(spec: str | Path | None) -> Path:
    """Turn a model path or shipped model name into a file path; raise ModelError if neither."""
    if spec is None:
        raise ModelError("(default)", "no default model is shipped in this version; pass --model PATH")
    path = Path(spec)
    if path.is_file():
        return path
    shipped = shipped_models()
    if str(spec) in shipped:
        return shipped[str(spec)]
    known = ", ".join(shipped) or "none shipped"
    raise ModelError(spec, f"no such file, and not a known model name (known: {known})")
