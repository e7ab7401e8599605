"""Fine-tuning the paper's way, on `SamCellTiles` (the same module that is exported).

Recipe (paper, Methods): full fine-tuning of the image encoder and mask decoder, prompt encoder
frozen; L2 loss between the sigmoid output and the distance-map target; AdamW, lr 1e-4, weight
decay 0.1; 250 warm-up steps then linear decay to zero; early stopping on validation loss
(patience 7 epochs, min delta 1e-4), keeping the best checkpoint. Mixed precision (bf16) on GPU.
Options beyond the paper, for small CPU budgets: `freeze_stages` keeps the encoder's patch
embedding and first N stages fixed (their backward pass is most of a TinyViT step's cost at full
resolution), `focus` centres crops on cells, `max_minutes` ends training at the next epoch boundary.
Batch-norm layers (TinyViT has them; ViT-B does not) always use their pretrained statistics: a
batch of a few correlated crops is no estimate of them.

Outputs in OUT: `best.safetensors` + `best.json` (SAM config, recipe, data, metrics: loadable by
`export`), and `last.safetensors` + `last.json` + `last.state.pt` (optimiser and schedule) to resume.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..runtime.atomic import atomic_path, write_text_atomic
from .annotations import Sample, by_source
from .data import Augment, cell_diameters, random_crop
from .memory import keep_freed_memory
from .render import rendered_copy

VALIDATION_RENDERS = ("membrane",)  # appearances added to validation when a run renders its training crops


@dataclass
class Recipe:
    """Every training choice, saved with each checkpoint."""

    epochs: int = 100
    batch_size: int = 8
    steps_per_epoch: int = 0  # 0: one pass worth of crops (total pixels / tile area / batch size)
    lr: float = 1e-4
    weight_decay: float = 0.1
    warmup_steps: int = 250
    patience: int = 7
    min_delta: float = 1e-4
    val_fraction: float = 0.1
    val_crops: int = 16
    tile: int = 256
    seed: int = 0
    config: str = "vit-b"
    init: str | None = None
    freeze_stages: int = 0
    focus: float = 0.0
    max_minutes: float = 0.0  # 0: no time limit
    source_weights: dict = field(default_factory=dict)  # source -> relative share of crops (others: 1)
    augment: dict = field(default_factory=lambda: asdict(Augment()))


EXTENSIBLE = ("epochs", "max_minutes", "patience")  # what a resumed run may change: its budget
RESUME_FILES = ("last.safetensors", "last.json", "last.state.pt")  # what `save("last")` writes, `resume` reads


def require_resume_files(out: Path) -> None:
    """Name every piece of a saved run that `out` lacks, before any data is loaded."""
    missing = [name for name in RESUME_FILES if not (Path(out) / name).exists()]
    if missing:
        raise InputError(f"--resume: nothing to resume in {out} (no {', '.join(missing)})")


def split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Image-level train/validation split, made within each source so every source is validated
    (never crops of one image on both sides; a source of one image trains and validates on it)."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for group in by_source(samples).values():
        order = rng.permutation(len(group))
        count = max(1, int(round(len(group) * fraction))) if len(group) > 1 else 0
        val += [group[i] for i in order[:count]] or [group[order[0]]]
        train += [group[i] for i in order[count:]]
    return train, val


def _draw(samples: list[Sample], rng: np.random.Generator, weights: dict | None = None) -> Sample:
    """A source (uniformly, or by `weights`: source -> relative share, others 1), then one of its
    images: a 20-frame time-lapse weighs no more than a source of five images, so every kind of
    cell is seen as often as chosen, not as often as it happens to be photographed."""
    groups = by_source(samples)
    shares = np.array([float((weights or {}).get(source, 1.0)) for source in groups])
    group = list(groups.values())[rng.choice(len(groups), p=shares / shares.sum())]
    return group[rng.integers(len(group))]


def _batch(samples: list[Sample], rng: np.random.Generator, size: int, tile: int, augment: Augment | None,
           focus: float = 0.0, weights: dict | None = None):
    pairs = [random_crop(_draw(samples, rng, weights), rng, tile, augment, focus) for _ in range(size)]
    tiles = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None])
    targets = torch.from_numpy(np.stack([p[1] for p in pairs])[:, None])
    return tiles, targets


def schedule(warmup: int, total: int):
    """Linear warm-up to the base lr over `warmup` steps, then linear decay to zero at `total`."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


class Trainer:
    """Holds model, optimiser, schedule and data; `fit` runs epochs with early stopping."""

    def __init__(self, samples: list[Sample], out: str | Path, recipe: Recipe, device: str = "auto",
                 data_sources: list[str] | None = None) -> None:
        from ..export.checkpoints import load_checkpoint
        from ..export.model import SamCellTiles, config_by_name, random_sam

        keep_freed_memory()
        self.recipe, self.out = recipe, Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if device == "auto" else device))
        torch.manual_seed(recipe.seed)
        config = config_by_name(recipe.config)
        sam = load_checkpoint(recipe.init, config).model if recipe.init else random_sam(config, recipe.seed)
        self.model = SamCellTiles(sam, recipe.tile).to(self.device)
        for module in self._frozen():
            for param in module.parameters():
                param.requires_grad_(False)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=recipe.lr, weight_decay=recipe.weight_decay)
        self.train_set, self.val_set = split(samples, recipe.val_fraction, recipe.seed)
        pixels = sum(s.image.size for s in self.train_set)
        self.steps_per_epoch = recipe.steps_per_epoch or max(1, math.ceil(pixels / recipe.tile**2 / recipe.batch_size))
        self.total_steps = self.steps_per_epoch * recipe.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule(recipe.warmup_steps, self.total_steps))
        self.val_renders = VALIDATION_RENDERS if recipe.augment.get("render") else ()
        self.val_batch = self._validation_batch()
        self.data = {"sources": data_sources or [], "train_images": len(self.train_set), "val_images": len(self.val_set),
                     "val_names": [s.name for s in self.val_set],
                     "val_renders": list(self.val_renders),
                     "cell_diameter_px": cell_diameters(self.train_set, Augment(**recipe.augment))}
        self.state = {"epoch": 0, "step": 0, "best_val": math.inf, "stale_epochs": 0, "history": []}
        self.rng = np.random.default_rng(recipe.seed + 2)

    def _validation_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`val_crops` crops of the validation images; a run that renders appearances is also
        validated on as many crops of their rendered copies (`VALIDATION_RENDERS`), so early
        stopping sees the looks it trains for. The original crops are those of a run without."""
        recipe = self.recipe
        tiles, targets = _batch(self.val_set, np.random.default_rng(recipe.seed + 1), recipe.val_crops, recipe.tile, None)
        if self.val_renders:
            copies = [rendered_copy(s, kind, recipe.seed) for kind in self.val_renders for s in self.val_set]
            more = _batch(copies, np.random.default_rng(recipe.seed + 3), recipe.val_crops, recipe.tile, None)
            tiles, targets = torch.cat([tiles, more[0]]), torch.cat([targets, more[1]])
        return tiles, targets

    def _frozen(self) -> list[torch.nn.Module]:
        """The prompt encoder (unused without prompts), plus the first `freeze_stages` encoder stages."""
        encoder = self.model.sam.vision_encoder
        stages = [encoder.patch_embed, *encoder.layers[: self.recipe.freeze_stages]] if self.recipe.freeze_stages else []
        return [self.model.sam.prompt_encoder, *stages]

    def _train_mode(self) -> None:
        self.model.train()
        for module in self.model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()

    def loss(self, tiles: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """L2 loss on the sigmoid output (bf16 autocast on GPU)."""
        tiles, targets = tiles.to(self.device), targets.to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            prediction = self.model(tiles)
        return torch.mean((prediction.float() - targets) ** 2)

    @torch.no_grad()
    def validate(self) -> float:
        self.model.eval()
        tiles, targets = self.val_batch
        losses = [self.loss(tiles[i : i + self.recipe.batch_size], targets[i : i + self.recipe.batch_size]).item()
                  for i in range(0, len(tiles), self.recipe.batch_size)]
        return float(np.mean(losses))

    def fit(self, progress: bool = True) -> dict:
        """Train until the epoch budget or early stopping; return the best metrics."""
        from tqdm import tqdm

        augment = Augment(**self.recipe.augment)
        deadline = time.monotonic() + self.recipe.max_minutes * 60 if self.recipe.max_minutes else math.inf
        while (self.state["epoch"] < self.recipe.epochs and self.state["stale_epochs"] < self.recipe.patience
               and time.monotonic() < deadline):
            self._train_mode()
            start, losses = time.perf_counter(), []
            bar = tqdm(range(self.steps_per_epoch), desc=f"epoch {self.state['epoch'] + 1}/{self.recipe.epochs}",
                       disable=not progress, leave=False)
            for _ in bar:
                loss = self.loss(*_batch(self.train_set, self.rng, self.recipe.batch_size, self.recipe.tile, augment,
                                         self.recipe.focus, self.recipe.source_weights))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.scheduler.step()
                self.state["step"] += 1
                losses.append(loss.item())
                bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            self._end_epoch(float(np.mean(losses)), self.validate(), time.perf_counter() - start)
        return {"best_val_loss": self.state["best_val"], "epochs": self.state["epoch"], "steps": self.state["step"],
                "stopped_early": self.state["stale_epochs"] >= self.recipe.patience,
                "out_of_time": self.state["epoch"] < self.recipe.epochs and time.monotonic() >= deadline}

    def _end_epoch(self, train_loss: float, val_loss: float, seconds: float) -> None:
        self.state["epoch"] += 1
        tiles_per_second = self.steps_per_epoch * self.recipe.batch_size / seconds
        self.state["history"].append({"epoch": self.state["epoch"], "train_loss": train_loss, "val_loss": val_loss,
                                      "seconds": seconds, "tiles_per_second": tiles_per_second})
        improved = val_loss < self.state["best_val"] - self.recipe.min_delta
        if improved:
            self.state["best_val"], self.state["stale_epochs"] = val_loss, 0
            self.save("best")
        else:
            self.state["stale_epochs"] += 1
        self.save("last")

    def save(self, name: str) -> None:
        """`name`.safetensors (+ .json); `last` also keeps the optimiser state for resuming."""
        from safetensors.torch import save_file

        weights = {k: v.detach().cpu().clone().contiguous() for k, v in self.model.sam.state_dict().items()}
        with atomic_path(self.out / f"{name}.safetensors") as tmp:
            save_file(weights, str(tmp))
        meta = {"sam_config": self.model.sam.config.to_dict(), "recipe": asdict(self.recipe), "data": self.data,
                "metrics": {"val_loss": self.state["history"][-1]["val_loss"], "best_val_loss": self.state["best_val"],
                            "epoch": self.state["epoch"], "step": self.state["step"]},
                "history": self.state["history"]}
        write_text_atomic(self.out / f"{name}.json", json.dumps(meta, indent=2, default=str))
        if name == "last":
            with atomic_path(self.out / "last.state.pt") as tmp:
                torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                            "state": {k: v for k, v in self.state.items() if k != "history"},
                            "rng": self.rng.bit_generator.state}, tmp)

    def resume(self) -> None:
        """Continue from OUT/last.*: weights, optimiser, schedule, counters and history. Only the
        budget (`EXTENSIBLE`) may differ from the saved run: more epochs extend its schedule, while
        other data or another recipe would silently mix two trainings under one record."""
        from safetensors.torch import load_file

        saved = json.loads((self.out / "last.json").read_text())
        current = json.loads(json.dumps(asdict(self.recipe), default=str))  # as saved: tuples read back as lists
        recipe = dict(saved["recipe"])  # augmentations added since that run was saved count at their defaults
        recipe["augment"] = json.loads(json.dumps({**asdict(Augment()), **recipe.get("augment", {})}))
        changed = sorted(key for key, value in current.items() if key not in EXTENSIBLE and recipe.get(key) != value)
        if saved["data"].get("val_names") != self.data["val_names"]:
            changed.append("data (validation images differ)")
        if changed:
            raise InputError(f"{self.out}: cannot resume with a different {', '.join(changed)} than the saved run; "
                             f"only {', '.join(EXTENSIBLE)} may change (start a new --out instead)")
        state = torch.load(self.out / "last.state.pt", map_location="cpu", weights_only=True)
        self.model.sam.load_state_dict(load_file(str(self.out / "last.safetensors")))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.state.update(state["state"])
        self.state["history"] = saved["history"]
        self.rng.bit_generator.state = state["rng"]
