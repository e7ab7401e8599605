"""`samcell-rt adapt`: from a few annotated images to a verified, registered model within a time budget.

The budget (`minutes`) bounds the whole call: reading, the starting model's maps, training,
scoring, threshold choice, export and verification; each stage reserves what the later ones need
from speeds measured in the run. What trains is the recipe (`AdaptSettings.recipe`):

- `full` (default) and `late`: the encoder trains too (`adapt_whole.py`), with a guard rail that
  ships the starting weights with thresholds chosen on the annotations where training scores worse;
- `decoder`: the encoder stays frozen and only the mask decoder trains on embeddings computed once
  (`adapt_decoder.py`): many cheap steps, but blind to appearances the encoder cannot read.

Scoring (the before/after table) is by `--val` images or, without, by cross-validation over the
given images; both recipes score the same way (`adapt_scores.py`). What the budget bought (optimiser
steps, crops) and which recipe shipped and why go in the table and the model's record. Guard rails:
every input and output is checked before any work, the name and the output file are claimed for
the run, and a killed run leaves the old model whole (`adapt_output.py`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..cache import cache_dir
from ..errors import InputError
from ..registry import DEFAULT_MODEL, adapted_models, adapting, remove_weights
from ..runtime.atomic import check_output_file, remove_stale_parts
from .adapt_job import AdaptSettings, Job, data_sha256
from .adapt_output import AdaptResult, Shipment, ship
from .budget import Budget
from .memory import keep_freed_memory
from .recipes import Recipe

__all__ = ["AdaptRequest", "AdaptResult", "AdaptSettings", "adapt"]

MAX_MINUTES = 7 * 24 * 60  # a budget beyond a week is a typo, not a plan
# a temporary file this old whose writer holds no lock was left by a killed run (the lock alone
# decides on POSIX; the age protects live writers where there are no locks)
STALE_PART_SECONDS = 300.0


@dataclass
class AdaptRequest:
    """What the user asks for: the annotated images, where the model goes, what it starts from."""

    data: list[str]
    out: Path
    model: str = DEFAULT_MODEL  # the model compared against, and (without `init`) the starting weights
    val: list[str] = field(default_factory=list)
    minutes: float = 10.0
    name: str | None = None  # default: the --out file's stem
    overwrite: bool = False
    init: str | None = None  # a starting checkpoint instead of the model's own weights


def adapt(request: AdaptRequest, settings: AdaptSettings | None = None, progress: bool = True) -> AdaptResult:
    """Adapt `request.model` to the annotated images; write, verify and register the model at `request.out`."""
    out, settings = Path(request.out), settings or AdaptSettings()
    name = request.name or out.stem
    check_minutes(request.minutes)
    with adapting(name, out, request.overwrite):  # the name and the file are this run's until it ends
        check_out(out, request.overwrite)  # under the claim: no other adapt run can make `out` meanwhile
        for folder, of in ((weights_dir(), ""), (cache_dir() / "adapt", ""), (out.parent, out.name)):
            remove_stale_parts(folder, STALE_PART_SECONDS, of)
        remove_orphan_weights(name)
        keep_freed_memory()  # before the speeds the budget plans with are measured
        budget = Budget(request.minutes * 60, progress)
        try:
            return _run(request, Job.read(request.data, request.val, request.model, request.init, settings, budget),
                        out, name)
        finally:
            budget.close()


def _run(request: AdaptRequest, job: Job, out: Path, name: str) -> AdaptResult:
    """Train with the job's recipe, then ship what it chose."""
    from .finetune import frozen_stages

    wrapper = job.wrapper()
    frozen_stages(wrapper, job.settings.recipe)  # an unknown recipe, or `late` on a ViT, fails before any work
    if job.settings.recipe == Recipe.DECODER:
        from .adapt_decoder import DecoderRun

        verdict, training = DecoderRun(job, wrapper).run()
    else:
        from .adapt_whole import WholeRun

        verdict, training = WholeRun(job, wrapper, from_parent=request.init is None).run()
    job.budget.tick("exporting and verifying")
    shipment = Shipment(wrapper, job.model, job.loaded.sha256, job.train, job.val, verdict, training,
                        asdict(job.settings))
    record = ship(shipment, out, name, request.overwrite, data_sha256(job.train), weights_dir(),
                     job.budget.seconds / 60)
    return AdaptResult(out, name, verdict, training, job.budget.elapsed(), record)


def check_minutes(minutes: float) -> None:
    """InputError unless the budget is a finite number of minutes, more than none and at most a week."""
    if not (isinstance(minutes, (int, float)) and 0 < minutes <= MAX_MINUTES):  # NaN fails every comparison
        raise InputError(f"--minutes {minutes}: give a time budget of more than 0 and at most {MAX_MINUTES} minutes")


def check_out(out: Path, overwrite: bool) -> None:
    """Every refusal the output file can earn, before any work: it exists (without `overwrite`), it is
    no .onnx file, it lies in samcell-rt's own cache, or it cannot be written there."""
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it")
    if out.suffix != ".onnx":
        raise InputError(f"{out}: the adapted model is an ONNX file; name it *.onnx")
    if out.resolve().is_relative_to(cache_dir().resolve()):
        raise InputError(f"{out}: inside samcell-rt's own cache ({cache_dir()}); write the adapted model elsewhere")
    check_output_file(out)


def weights_dir() -> Path:
    """Where adapted models' trainable weights are kept (in the cache; `adapt --model NAME` starts from them)."""
    return cache_dir() / "adapt" / "weights"


def remove_orphan_weights(name: str) -> None:
    """Delete the weights a killed earlier run for `name` saved but never registered. Called while
    this run holds `name`, so no live run can own them."""
    registered = {record.get("weights") for record in adapted_models().values()}
    pattern = re.compile(re.escape(name) + r"-[0-9a-f]{12}-[0-9a-f]{8}\.safetensors")
    for path in weights_dir().glob("*.safetensors") if weights_dir().is_dir() else ():
        if pattern.fullmatch(path.name) and str(path) not in registered:
            remove_weights(path)
