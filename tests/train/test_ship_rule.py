"""The shipping rule for a new default model, on hand-made scores and on a heldout.py-shaped report."""

from __future__ import annotations

import pytest

from samcell_rt.train.ship_rule import ModelScores, decide, scores_from_report

V4 = ModelScores(extended_validation=0.70, validation=0.838, heldout=0.779)


def test_a_model_that_reads_the_new_looks_and_holds_in_domain_ships():
    ships, lines = decide(V4, ModelScores(0.75, 0.830, 0.760))  # 0.008 and 0.019 below: inside both margins
    assert ships and all(line.startswith("met") for line in lines)


@pytest.mark.parametrize("candidate, missed", [
    (ModelScores(0.70, 0.850, 0.800), "rendered appearances"),  # no better on the new looks: equal is not enough
    (ModelScores(0.80, 0.826, 0.800), "validation"),  # 0.012 below v4's validation
    (ModelScores(0.80, 0.840, 0.755), "held-out bacteria"),  # 0.024 below v4's held-out score
])
def test_each_condition_alone_can_keep_the_current_model(candidate, missed):
    ships, lines = decide(V4, candidate)
    assert not ships
    assert [line for line in lines if line.startswith("missed")] == [next(text for text in lines if missed in text)]


def _entry(ops: dict) -> dict:
    return {**{k: {"OP_CSB": v} for k, v in ops.items()}, "all": {"OP_CSB": 0.0}, "warnings": [], "scale": [],
            "diameter_px": []}


def test_scores_are_read_at_the_swept_pair_with_each_source_counting_once():
    report = {"sets": {
        "validation": {"scores": {
            "v5": _entry({"pkg:a": 0.1, "pkg:b": 0.1, "pkg:a~membrane": 0.1}),
            "v5@peak0.35/fill0.07": _entry({"pkg:a": 0.9, "pkg:b": 0.7, "pkg:a~membrane": 0.2})}},
        "heldout": {"scores": {"v5": {"all": {"OP_CSB": 0.1}},
                               "v5@peak0.35/fill0.07": {"all": {"OP_CSB": 0.76}}}}}}
    scores = scores_from_report(report, "v5")
    assert scores.validation == pytest.approx(0.8)  # (0.9 + 0.7) / 2: renderings left out
    assert scores.extended_validation == pytest.approx(0.6)  # (0.9 + 0.7 + 0.2) / 3
    assert scores.heldout == pytest.approx(0.76)
