"""How file names carry a time point or a well id: the default patterns and their checks.

Kept free of numpy so the command line can show the defaults in `--help` without loading the
numeric stack. A pattern the user got wrong is an InputError (exit 2) before any work starts.
"""

from __future__ import annotations

import re

from ..errors import InputError

DEFAULT_TIME_PATTERN = r"(?i)(?:^|[_\-. ])(?:t|time|frame)[_-]?(?P<time>\d+(?:\.\d+)?)(?P<unit>h|min|s)?(?=$|[_\-. ])"
DEFAULT_WELL_PATTERN = r"(?<![A-Za-z0-9])(?P<row>[A-P])(?P<col>\d{1,2})(?!\d)"
ROW_LETTERS = "ABCDEFGHIJKLMNOP"  # plate rows, up to the 384-well layout


def _compile(pattern: str, option: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise InputError(f"{option} {pattern!r} is not a valid regular expression ({exc})") from None


def compile_time_pattern(pattern: str) -> re.Pattern:
    """The --time-pattern regex; InputError unless it compiles and has a `time` group (or one group)."""
    compiled = _compile(pattern, "--time-pattern")
    if "time" not in compiled.groupindex and compiled.groups < 1:
        raise InputError(f"--time-pattern {pattern!r} needs a group for the time, e.g. (?P<time>\\d+)")
    return compiled


def compile_well_pattern(pattern: str) -> re.Pattern:
    """The --well-pattern regex; InputError unless it compiles with groups `row` (letter) and `col` (number)."""
    compiled = _compile(pattern, "--well-pattern")
    if not {"row", "col"} <= set(compiled.groupindex):
        raise InputError(f"--well-pattern {pattern!r} needs groups (?P<row>...) and (?P<col>...)")
    return compiled
