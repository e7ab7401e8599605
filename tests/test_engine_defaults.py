"""`segment`, `serve` and `gui` all default to `--engine auto` (the fastest accurate engine installed here)."""

from __future__ import annotations

import pytest

from samcell_rt.cli import main


@pytest.mark.parametrize("command", ["segment", "serve", "gui"])
def test_commands_default_to_auto(command):
    (engine,) = [p for p in main.commands[command].params if p.name == "engine"]
    assert engine.default == "auto"
