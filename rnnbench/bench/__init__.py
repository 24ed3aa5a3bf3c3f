"""The benchmark harness behind ``rnnbench bench`` (method: docs/benchmarking.md).

- ``cases``: one measured configuration (``BenchCase``: backend, dtype, cell, sizes, lengths
  and mode: inference or training) and the sweep that expands options into cases.
- ``jobs``: the functions that run *inside* a backend's worker process (set up a case, time
  calls, measure a GEMM peak); they import the backend's library, nothing here does.
- ``stats``: median, IQR and min of the raw samples; the spread between processes and the
  intervals of ratios (Student t, no SciPy).
- ``stability``: the warnings a noisy run gets (spread, drift, load, governor).
- ``limits``: the limit model, the time a machine could not beat for a case.
- ``relative``: each backend's speed relative to a baseline, with its interval.
- ``machine``: the machine record written into every results file.
- ``results``: the results file (schema ``rnnbench.bench/1.5``), written atomically after every
  case, and resumable.
- ``runner``: runs each group of cases (the backends of one configuration) interleaved in
  several worker processes each, enforces the timeout, records failures.
- ``progress``: a rich progress bar on a terminal, plain lines otherwise.
"""

from rnnbench.bench.cases import BenchCase, expand_cases
from rnnbench.bench.results import SCHEMA, ResultsFile
from rnnbench.bench.runner import BenchConfig, BenchSummary, run_bench
from rnnbench.bench.stats import summarize

__all__ = [
    "SCHEMA",
    "BenchCase",
    "BenchConfig",
    "BenchSummary",
    "ResultsFile",
    "expand_cases",
    "run_bench",
    "summarize",
]
