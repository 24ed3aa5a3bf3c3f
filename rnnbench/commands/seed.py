"""``rnnbench seed``: replay the seed notebook, then run every backend on the seed's weights.

1. The replay runs the notebook's own code in the tf1 worker process (TF1 graph mode, graph seed
   35, ``BasicRNNCell(4)`` under ``dynamic_rnn``), prints what the notebook printed, and checks it
   against the recorded seed: the kernel exactly (to the digits the notebook printed; see
   ``check_kernel``), output and final state within ``SEED_REPLAY_ATOL``. Without TensorFlow
   and tf-keras the replay is skipped, saying why.
2. The seed table: each backend on the seed's kernel and input (float32), against the float64
   reference (the project's tolerances) and against the output the notebook printed
   (``SEED_ATOL``: the printed digits carry no more).
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from typing import Any

from rnnbench.commands.common import add_backend_option, positive_float
from rnnbench.texttable import text_table

HELP = "replay the seed TF1 notebook (graph seed 35) and run every backend on its weights"

REPLAY_TARGET = "rnnbench.backends.tf1_backend:replay_seed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_backend_option(parser, look_up=False)  # run() looks them up, before the replay
    parser.add_argument(
        "--notebook",
        metavar="JSON",
        default=None,
        help="the seed record to check against (default: the one shipped in rnnbench/data)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=300.0,
        help="seconds to wait for the tf1 worker's replay (TensorFlow's import is slow)",
    )


# What a seed record holds (rnnbench/data/seed_notebook.json): the numbers the replay and the
# seed table read, and the names they check.
NOTEBOOK_ARRAYS = ("input", "kernel", "bias", "output", "final_state")
NOTEBOOK_FIELDS = ("graph_seed", "num_units", "kernel_name", "bias_name", *NOTEBOOK_ARRAYS)


def load_notebook(path: str | None = None) -> dict[str, Any]:
    """The seed record: the shipped one, or the JSON file at ``path``, refused with a clear
    error when it is missing, a folder, empty, not JSON or not a seed record."""
    if path is None:
        text = resources.files("rnnbench").joinpath("data/seed_notebook.json").read_text()
        data: Any = json.loads(text)
    else:
        from rnnbench.fileio import read_json_file

        data = read_json_file(path, what="seed notebook record (JSON)")
    check_notebook(data, path or "rnnbench/data/seed_notebook.json")
    return dict(data)


def check_notebook(data: Any, where: str) -> None:
    """Refuse a JSON document that is not a seed record, naming what it lacks."""
    import numpy as np

    from rnnbench.errors import SpecError

    hint = (
        "give a record shaped as rnnbench/data/seed_notebook.json (graph_seed, num_units, "
        "kernel_name, bias_name, input, kernel, bias, output, final_state), or leave "
        "--notebook out to use the shipped one"
    )
    if not isinstance(data, dict):
        raise SpecError(
            f"{where}: is not a seed notebook record (the top level is a "
            f"{type(data).__name__}, not an object)",
            hint,
        )
    missing = [key for key in NOTEBOOK_FIELDS if key not in data]
    if missing:
        found = f" (it is a {data['schema']} file)" if isinstance(data.get("schema"), str) else ""
        raise SpecError(
            f"{where}: is not a seed notebook record{found}: it lacks {', '.join(missing)}", hint
        )
    for key in ("graph_seed", "num_units"):
        if isinstance(data[key], bool) or not isinstance(data[key], int) or data[key] < 1:
            raise SpecError(f"{where}: {key} is {data[key]!r}, not a whole number >= 1", hint)
    for key in NOTEBOOK_ARRAYS:
        try:
            arr = np.asarray(data[key], np.float64)
        except (TypeError, ValueError):
            raise SpecError(f"{where}: {key} is not an array of numbers", hint) from None
        if arr.size == 0 or not np.isfinite(arr).all():
            raise SpecError(f"{where}: {key} is empty or holds non-finite numbers", hint)
    x = np.asarray(data["input"], np.float64)
    units = data["num_units"]
    shapes = {key: np.shape(data[key]) for key in NOTEBOOK_ARRAYS}
    if x.ndim != 3 or shapes != {
        "input": x.shape,
        "kernel": (x.shape[-1] + units, units),
        "bias": (units,),
        "output": (*x.shape[:2], units),
        "final_state": (x.shape[0], units),
    }:
        raise SpecError(
            f"{where}: the shapes {shapes} do not fit num_units N = {units} (need input "
            "(batch, time, I), kernel (I + N, N), bias (N,), output (batch, time, N), "
            "final_state (batch, N))",
            hint,
        )


def _array(text: str, values: Any) -> str:
    import numpy as np

    body = np.array2string(np.asarray(values), separator=" ", max_line_width=96)
    return f"{text}:\n{body}"


def as_printed(values: Any) -> Any:
    """``values`` as the notebook printed them: NumPy's default array print (at most 8 decimals,
    fewer when fewer identify the float32), parsed back. Exact: no tolerance enters."""
    import numpy as np

    arr = np.asarray(values, np.float32)
    digits = [np.format_float_positional(v, precision=8, unique=True, trim="-") for v in arr.flat]
    return np.array([float(d) for d in digits]).reshape(arr.shape)


def check_kernel(kernel: Any, recorded: Any) -> tuple[bool, list[str]]:
    """The replayed kernel against the recorded one: (ok, [verdict, details...]).

    The record holds what the notebook printed, 8 decimals, which for |w| < 0.1 is fewer digits
    than a float32 needs (the seed's -0.034170628 printed as -0.03417063). So the exact check is
    on the printed digits (``SEED_KERNEL_ATOL``, zero); a float32 bit comparison with the record
    can only hold where its digits identify the float32, and is reported, not required.
    """
    import numpy as np

    from rnnbench.tolerances import SEED_KERNEL_ATOL

    have = np.asarray(kernel)
    want = np.asarray(recorded, np.float64)
    if have.shape != want.shape or have.dtype != np.float32:
        return False, [f"kernel is {have.dtype} {have.shape}; the seed's is float32 {want.shape}"]
    printed_diff = np.abs(as_printed(have) - want)
    ok = bool(np.all(printed_diff <= SEED_KERNEL_ATOL))
    verdict = "kernel equals the seed's kernel exactly, digit for digit as the notebook printed it"
    if not ok:
        verdict += f": {int((printed_diff > SEED_KERNEL_ATOL).sum())} element(s) differ, max "
        verdict += f"{printed_diff.max():.3e}"
    bits = have == want.astype(np.float32)
    detail = f"as float32: {int(bits.sum())} of {bits.size} elements bit for bit"
    if not bits.all():
        ulps = np.abs(have - want.astype(np.float32)) / np.spacing(np.abs(have))
        detail += (
            f"; the other {int((~bits).sum())} differ by at most {ulps[~bits].max():.0f} ulp, "
            "beyond the 8 printed decimals"
        )
    return ok, [verdict, detail]


def replay(notebook: dict[str, Any], timeout: float) -> tuple[bool | None, list[str]]:
    """Replay the notebook in the tf1 worker. Returns (ok, lines); ok is None when skipped."""
    import numpy as np

    from rnnbench.process import pooled_worker
    from rnnbench.registry import backend_info
    from rnnbench.tolerances import SEED_REPLAY_ATOL

    info = backend_info("tf1")
    reason = info.unavailable_reason()
    if reason is not None:
        return None, [
            f"Replay SKIPPED: the tf1 backend is unavailable ({reason}); the notebook's own "
            "TF1 code needs tensorflow and tf-keras. The seed table below still runs."
        ]
    x = np.asarray(notebook["input"], np.float32)
    header, got = pooled_worker(info).call(
        REPLAY_TARGET,
        {"input": x},
        timeout=timeout,
        num_units=int(notebook["num_units"]),
        graph_seed=int(notebook["graph_seed"]),
    )
    lines = [
        f"Replay in the tf1 worker process (tensorflow {header['tensorflow']}, "
        "TF_USE_LEGACY_KERAS=1, disable_v2_behavior, graph seed "
        f"{notebook['graph_seed']}, BasicRNNCell({notebook['num_units']}) under dynamic_rnn):",
        f"state size: {header['state_size']}",
        "variables:",
        *(f"  {name}  {tuple(shape)}" for name, shape in header["variables"]),
        _array("kernel", got["kernel"]),
        _array("bias", got["bias"]),
        _array("output", got["output"]),
        _array("final state", got["final_state"]),
        "checks against the seed record:",
    ]
    checks: list[tuple[str, bool | None]] = []
    names = [name for name, _ in header["variables"]]
    expected_names = [notebook["kernel_name"], notebook["bias_name"]]
    checks.append((f"variables are {expected_names}", names == expected_names))
    kernel_ok, kernel_lines = check_kernel(got["kernel"], notebook["kernel"])
    checks.append((kernel_lines[0], kernel_ok))
    checks += [(f"  ({text})", None) for text in kernel_lines[1:]]  # information only
    bias_ok = np.array_equal(got["bias"], np.asarray(notebook["bias"], np.float32))
    checks.append(("bias equals the seed's bias", bias_ok))
    for key, label in (("output", "output"), ("final_state", "final state")):
        want = np.asarray(notebook[key], np.float64)
        have = np.asarray(got[key], np.float64)
        if have.shape != want.shape:
            checks.append((f"{label} has shape {have.shape}, the seed's is {want.shape}", False))
            continue
        err = float(np.abs(have - want).max())
        checks.append(
            (
                f"{label} vs the seed's: max abs diff {err:.2e} (<= {SEED_REPLAY_ATOL:g})",
                not err > SEED_REPLAY_ATOL,  # NaN fails
            )
        )
    marks = {True: "  [ok] ", False: "  [FAIL] ", None: "      "}
    lines += [f"{marks[ok]}{text}" for text, ok in checks]
    ok = all(ok is not False for _, ok in checks)
    if not ok:
        lines.append(
            "Replay FAILED: this TensorFlow does not reproduce the seed notebook (graph seed "
            f"{notebook['graph_seed']} gives other weights, or the cell computes differently)."
        )
    return ok, lines


def seed_table(notebook: dict[str, Any], backends: list[str] | None) -> tuple[bool, list[str]]:
    """Every backend on the seed's kernel and input; (all passed or skipped, lines)."""
    import math

    import numpy as np

    from rnnbench.compare import compare
    from rnnbench.errors import BackendUnavailableError, RNNBenchError
    from rnnbench.registry import backend_info, get_backend, list_backends
    from rnnbench.tolerances import SEED_ATOL
    from rnnbench.weights import RNNWeights

    weights = RNNWeights.from_tf1(
        np.asarray(notebook["kernel"], np.float32), np.asarray(notebook["bias"], np.float32)
    )
    x = np.asarray(notebook["input"], np.float32)
    printed = np.asarray(notebook["output"], np.float64)
    names = list(backends) if backends is not None else list_backends()
    for name in names:
        backend_info(name)  # an unknown name is an error before anything runs
    cells: dict[tuple[str, str], Any] = {}
    for name in names:
        try:
            cells[(name, "float32")] = get_backend(name, dtype="float32")
        except RNNBenchError:
            continue  # compare() reports it as skipped or error, with the reason
    result = compare(weights, x, backends=names, cells=cells)
    head = ("backend", "vs float64 ref", "vs printed output", "verdict")
    body = []
    ok = True
    for row in result.rows:
        printed_err = math.nan
        verdict = row.status.upper() if row.status != "skipped" else "skipped"
        if row.status in ("pass", "fail"):
            try:
                y, _ = cells[(row.backend, "float32")].forward(x)
                printed_err = float(np.abs(np.asarray(y, np.float64) - printed).max())
            except (KeyError, BackendUnavailableError, RNNBenchError) as exc:
                verdict = f"ERROR: {str(exc).splitlines()[0]}"
                ok = False
            if not printed_err <= SEED_ATOL:  # NaN fails
                verdict = "FAIL"
                ok = False
        elif row.status == "error":
            ok = False
        if row.reason and row.status != "pass":
            verdict += f": {row.reason}"
        ref = "-" if math.isnan(row.max_abs) else f"{row.max_abs:.2e}"
        body.append(
            (row.backend, ref, "-" if math.isnan(printed_err) else f"{printed_err:.2e}", verdict)
        )
    lines = [
        f"Seed table: each backend on the seed's kernel and input, float32 (pass: within the "
        f"reference tolerance and within {SEED_ATOL:g} of the printed output)",
        *text_table(head, body, wrap_last=True).split("\n"),
    ]
    return ok, lines


def run(args: argparse.Namespace) -> int:
    from rnnbench.registry import backend_info

    for name in args.backends or ():
        backend_info(name)  # an unknown name fails before the slow replay starts
    notebook = load_notebook(args.notebook)
    where = args.notebook or "rnnbench/data/seed_notebook.json"
    print(
        f"Seed notebook ({where}): TF1 BasicRNNCell({notebook['num_units']}) under dynamic_rnn, "
        f"graph seed {notebook['graph_seed']}, input {notebook['input']}"
    )
    print()
    replay_ok, lines = replay(notebook, args.timeout)
    print("\n".join(lines))
    print()
    table_ok, lines = seed_table(notebook, args.backends)
    print("\n".join(lines))
    if replay_ok is False:
        print("\nrnnbench seed: the replay does not match the seed notebook (see FAIL above)")
        return 1
    if not table_ok:
        print("\nrnnbench seed: a backend does not reproduce the seed's output (see the table)")
        return 1
    return 0
