"""Reports and run comparison: ``rnnbench report`` and ``rnnbench compare``.

- ``results``: reading bench and check result files, and the schema version rule.
- ``model``: results grouped by machine and case; the machine record; the measured peaks.
- ``plots``: the figures (matplotlib, imported lazily, Agg canvas, PNG bytes).
- ``document``: the report as blocks, written as Markdown and as self-contained HTML.
- ``build``: assembles the report and writes it.
- ``stats`` / ``runs``: the Mann-Whitney U test and the case-by-case comparison of two runs.
"""

from rnnbench.report.build import write_report
from rnnbench.report.results import ResultsFileError, load, load_bench
from rnnbench.report.runs import CaseComparison, compare_runs
from rnnbench.report.stats import mann_whitney_u

__all__ = [
    "CaseComparison",
    "ResultsFileError",
    "compare_runs",
    "load",
    "load_bench",
    "mann_whitney_u",
    "write_report",
]
