"""Bridge: `write_report`'s old import path, for cli/segment.py until it imports samcell_rt.reports.report."""

from ..reports.report import write_report  # noqa: F401
