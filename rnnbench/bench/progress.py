"""Progress of a sweep: a rich progress bar on a terminal (case, backend, running median), one
plain line per case otherwise (logs, CI, pipes)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Protocol

from rnnbench.bench.cases import BenchCase
from rnnbench.bench.stability import result_warnings

if TYPE_CHECKING:
    from rnnbench.bench.runner import BenchSummary


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def describe(record: dict[str, Any]) -> str:
    """One line for a finished case."""
    if record["status"] != "ok":
        reason = (record.get("error") or "").split("\n")[0]
        return f"{record['status'].upper()}: {reason}"
    iqr = record.get("iqr_s")
    parts = [
        f"median {format_seconds(record['median_s'])}",
        f"IQR {format_seconds(iqr)}",
        f"{record['rounds']} rounds",
        f"compile {format_seconds(record.get('compile_s'))}",
        f"{record['gflops']:.2f} GFLOP/s",
    ]
    if record.get("efficiency") is not None:
        parts.append(f"{100 * record['efficiency']:.1f}% of peak")
    if record.get("limit_fraction") is not None:
        parts.append(f"{100 * record['limit_fraction']:.0f}% of the limit")
    if record.get("processes", 1) > 1 and record.get("process_sd") is not None:
        parts.append(f"{record['processes']} processes, spread {100 * record['process_sd']:.1f}%")
    line = ", ".join(parts)
    for warning in result_warnings(record):
        line += f"\n    warning: {warning}"
    return line


class Reporter(Protocol):
    def start(self, total: int, already_done: int, path: str | None) -> None: ...
    def case_started(self, case: BenchCase) -> None: ...
    def case_progress(self, case: BenchCase, median_s: float | None, rounds: int) -> None: ...
    def case_finished(self, case: BenchCase, record: dict[str, Any]) -> None: ...
    def message(self, text: str) -> None: ...
    def stop(self, summary: BenchSummary) -> None: ...


def _summary_line(summary: BenchSummary) -> str:
    counts = (
        ", ".join(
            f"{summary.count(s)} {s}"
            for s in ("ok", "failed", "timeout", "skipped", "interrupted")
            if summary.count(s)
        )
        or "nothing new"
    )
    where = f"; results in {summary.path}" if summary.path else ""
    done = f" ({summary.already_done} already done, skipped)" if summary.already_done else ""
    return f"bench: {counts}{done}{where}"


class PlainReporter:
    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        self.index = 0
        self.total = 0

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self, total: int, already_done: int, path: str | None) -> None:
        self.total = total
        self.index = already_done
        if already_done:
            self._print(f"resuming {path}: {already_done} of {total} cases already done")

    def case_started(self, case: BenchCase) -> None:
        pass  # the backends of a case start together (interleaved): counted as they finish

    def case_progress(self, case: BenchCase, median_s: float | None, rounds: int) -> None:
        pass

    def case_finished(self, case: BenchCase, record: dict[str, Any]) -> None:
        self.index += 1
        self._print(f"[{self.index}/{self.total}] {case.label()}: {describe(record)}")

    def message(self, text: str) -> None:
        self._print(text)

    def stop(self, summary: BenchSummary) -> None:
        if summary.interrupted:
            self._print("interrupted: every case finished before Ctrl-C is kept")
        self._print(_summary_line(summary))


class RichReporter(PlainReporter):
    """The plain lines, printed above a live bar that shows the running median."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        super().__init__()
        self.console = Console()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[median]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.task: Any = None

    def _print(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False)

    def start(self, total: int, already_done: int, path: str | None) -> None:
        self.progress.start()
        self.task = self.progress.add_task("bench", total=total, completed=already_done, median="")
        super().start(total, already_done, path)

    def case_started(self, case: BenchCase) -> None:
        super().case_started(case)
        from rich.markup import escape  # "[variant]" is not a style tag

        self.progress.update(self.task, description=escape(case.label()), median="starting")

    def case_progress(self, case: BenchCase, median_s: float | None, rounds: int) -> None:
        self.progress.update(
            self.task, median=f"median {format_seconds(median_s)} ({rounds} rounds)"
        )

    def case_finished(self, case: BenchCase, record: dict[str, Any]) -> None:
        super().case_finished(case, record)
        self.progress.advance(self.task)

    def stop(self, summary: BenchSummary) -> None:
        self.progress.stop()
        super().stop(summary)


def make_reporter(plain: bool | None = None) -> Reporter:
    """The rich bar on a terminal (when rich is installed), plain lines otherwise."""
    if plain is None:
        plain = not sys.stdout.isatty()
    if not plain:
        try:
            return RichReporter()
        except ImportError:
            pass
    return PlainReporter()
