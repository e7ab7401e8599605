"""Whether a newly trained default model replaces the shipped one: a rule fixed before its scores exist.

Written for samcell-lite version 5 (appearances rendered from masks, issue 26) before that model
was scored, so the scores cannot shape the rule. Every score is OP_CSB from `benchmarks/heldout.py`
at the threshold pair each model would ship with (its own best pair on the same grid, chosen on the
validation set including its rendered copies); "mean" is the mean over sources, each counting once.

The candidate ships when all three hold:
1. it reads the new appearances better: mean over the validation set with its rendered copies
   (each rendering its own source) above the current model's;
2. in-domain validation holds: mean over the original validation sources at most
   `VALIDATION_DROP` below the current model's;
3. the held-out bacteria hold: pooled OP_CSB at most `HELDOUT_DROP` below the current model's.
"""

from __future__ import annotations

from dataclasses import dataclass

from .render import RENDERED

VALIDATION_DROP = 0.01
HELDOUT_DROP = 0.02


@dataclass(frozen=True)
class ModelScores:
    """One model's three numbers the rule reads."""

    extended_validation: float  # mean per-source OP_CSB, validation images plus their rendered copies
    validation: float  # mean per-source OP_CSB, original validation images only
    heldout: float  # pooled OP_CSB, held-out bacteria frames


def decide(current: ModelScores, candidate: ModelScores) -> tuple[bool, list[str]]:
    """(ships, one line per condition saying whether it held and by how much)."""
    checks = [
        ("rendered appearances", candidate.extended_validation > current.extended_validation,
         candidate.extended_validation, current.extended_validation, "above"),
        ("validation", candidate.validation >= current.validation - VALIDATION_DROP,
         candidate.validation, current.validation - VALIDATION_DROP, "at least"),
        ("held-out bacteria", candidate.heldout >= current.heldout - HELDOUT_DROP,
         candidate.heldout, current.heldout - HELDOUT_DROP, "at least"),
    ]
    lines = [f"{'met' if held else 'missed'}: {name} {value:.3f}, needed {need} {bound:.3f}"
             for name, held, value, bound, need in checks]
    return all(held for _, held, *_ in checks), lines


def scores_from_report(report: dict, model: str) -> ModelScores:
    """A model's `ModelScores` from a `benchmarks/heldout.py` report, at the pair its sweep chose
    (the report's entry `<model>@peakP/fillF` when that differs from the model's own pair)."""
    def entry(set_name: str) -> dict:
        scores = report["sets"][set_name]["scores"]
        swept = [key for key in scores if key.startswith(f"{model}@")]
        return scores[swept[0] if swept else model]

    validation = entry("validation")
    per_source = {key: value["OP_CSB"] for key, value in validation.items()
                  if key != "all" and isinstance(value, dict)}  # the entry also lists per-image diameters etc.
    original = [value for key, value in per_source.items() if RENDERED not in key]
    return ModelScores(extended_validation=sum(per_source.values()) / len(per_source),
                       validation=sum(original) / len(original), heldout=entry("heldout")["all"]["OP_CSB"])
