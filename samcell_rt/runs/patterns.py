"""How file names carry a time point or a well id: the default patterns and their checks.

Kept free of numpy so the command line can show the defaults in `--help` without loading the
numeric stack. A pattern the user got wrong is an InputError (exit 2) before any work starts.
Patterns are user input run against every file name, so they run in the `regex` package (the
same syntax as `re`) with a time limit: a pattern that backtracks catastrophically, such as
`(a|aa)+$`, is an InputError naming the pattern and the file, never a hung run.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import InputError

DEFAULT_TIME_PATTERN = r"(?i)(?:^|[_\-. ])(?:t|time|frame)[_-]?(?P<time>\d+(?:\.\d+)?)(?P<unit>h|min|s)?(?=$|[_\-. ])"
DEFAULT_WELL_PATTERN = r"(?<![A-Za-z0-9])(?P<row>[A-P])(?P<col>\d{1,2})(?!\d)"
MAX_NAME_CHARS = 255  # a file name's limit on common file systems; longer names are matched on this much
MATCH_SECONDS = 0.5  # per file name; the default patterns take microseconds
ROW_LETTERS = "ABCDEFGHIJKLMNOP"  # plate rows, up to the 384-well layout


def _compile(pattern: str, option: str):
    import regex

    try:
        return regex.compile(pattern)
    except (regex.error, ValueError, OverflowError) as exc:
        raise InputError(f"{option} {pattern!r} is not a valid regular expression ({exc})") from None


def compile_time_pattern(pattern: str):
    """The --time-pattern regex; InputError unless it compiles and has a `time` group (or one group)."""
    compiled = _compile(pattern, "--time-pattern")
    if "time" not in compiled.groupindex and compiled.groups < 1:
        raise InputError(f"--time-pattern {pattern!r} needs a group for the time, e.g. (?P<time>\\d+)")
    return compiled


def compile_well_pattern(pattern: str):
    """The --well-pattern regex; InputError unless it compiles with groups `row` (letter) and `col` (number)."""
    compiled = _compile(pattern, "--well-pattern")
    if not {"row", "col"} <= set(compiled.groupindex):
        raise InputError(f"--well-pattern {pattern!r} needs groups (?P<row>...) and (?P<col>...)")
    return compiled


def find_in_name(compiled, name: str) -> list:
    """Every match of a user's pattern in a file name, within MATCH_SECONDS (InputError beyond)."""
    try:
        return list(compiled.finditer(name[:MAX_NAME_CHARS], timeout=MATCH_SECONDS))
    except TimeoutError:
        raise InputError(f"the pattern {compiled.pattern!r} takes over {MATCH_SECONDS} s on the file name {name!r} "
                         "(nested repeats such as (a+)+ or (a|aa)+ backtrack without end): simplify it") from None


def check_names(names: Iterable[str], *patterns) -> None:
    """Run each pattern on each name once, so a pattern that hangs fails before any work starts."""
    for name in names:
        for compiled in patterns:
            find_in_name(compiled, name)
