"""A plain-text table of a results file: ``python -m rnnbench.bench.table FILE.json``."""

from __future__ import annotations

import json
import sys
from typing import Any

from rnnbench.bench.progress import format_seconds
from rnnbench.commands.common import cell_name
from rnnbench.texttable import text_table


def format_table(data: dict[str, Any]) -> str:
    """One row per result; a "mode" column (inference or training) when the file has a
    training case (a file without one reads as before)."""
    results = data.get("results", [])
    modes = any(r.get("mode", "inference") != "inference" for r in results)
    head = (
        "backend",
        "variant",
        "dev",
        "cell",
        *(("mode",) if modes else ()),
        "B",
        "T",
        "I",
        "H",
        "median",
        "IQR",
        "per step",
        "compile",
        "GFLOP/s",
        "eff %",
        "status",
    )
    rows = []
    for r in results:
        ok = r.get("status") == "ok"
        eff = r.get("efficiency")
        rows.append(
            (
                r["backend"],
                r["variant"],
                r["device"],
                _cell(r),
                *((r.get("mode", "inference"),) if modes else ()),
                r["batch"],
                r["seq_len"],
                r["input_size"],
                r["hidden_size"],
                format_seconds(r.get("median_s")),
                format_seconds(r.get("iqr_s")),
                format_seconds(r.get("time_per_step_s")),
                format_seconds(r.get("compile_s")),
                f"{r['gflops']:.2f}" if ok and r.get("gflops") else "-",
                f"{100 * eff:.2f}" if ok and eff is not None else "-",
                r["status"] if ok else f"{r['status']}: {str(r.get('error')).splitlines()[0][:60]}",
            )
        )
    lines = text_table(head, rows, rule=False).split("\n")
    for key, peak in data.get("peak", {}).items():
        if peak.get("gflops"):
            lines.append(
                f"peak {key}: {peak['gflops']:.1f} GFLOP/s ({peak.get('library')} "
                f"GEMM n={peak.get('size')})"
            )
        else:
            why = str(peak.get("error")).splitlines()[0]
            lines.append(f"peak {key}: not measured ({why})")
    return "\n".join(lines)


def _cell(record: dict[str, Any]) -> str:
    """The record's cell as --cell names it (a 1.0 record has none: a vanilla RNN), and
    "ragged" for a batch of padded rows."""
    name = cell_name(record.get("cell", "rnn"), record.get("reset_after"))
    name += " relu" if record.get("nonlinearity", "tanh") != "tanh" else ""
    return name + (" ragged" if record.get("lengths", "full") != "full" else "")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for path in args:
        with open(path) as fh:
            print(format_table(json.load(fh)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
