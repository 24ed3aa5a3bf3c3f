"""The command line's edges: one error boundary (a message and a hint, exit 2, no traceback),
paths checked before any work, one validation of options for ``check`` and ``bench``, "nothing
verified" never passing, atomic writes that follow the umask, and the smaller Python API
refusals. Everything here runs in this process on tiny cases (``check --backends numpy``), and
no test starts a backend's worker process."""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import rnnbench as rb
import rnnbench.bench as bench_pkg
from rnnbench import fileio
from rnnbench.cli import build_parser, format_error, main
from rnnbench.commands import check as check_cmd
from rnnbench.commands import list_backends as list_cmd
from rnnbench.compare import NothingComparedError
from rnnbench.process import ProcessCell, Worker, strip_ansi

DATA = Path(__file__).parent / "data"
TINY = ["--backends", "numpy", "--batch", "2", "--seq-len", "3", "--input-size", "2",
        "--hidden-size", "3"]  # fmt: skip


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """main(argv) -> (exit code, stdout, stderr); argparse's exit is a code like any other."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder no file can be created in, for whoever runs the tests: chmod 0o555 for a user;
    root ignores that, so as root /sys, where nobody creates files."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    sys_folder = Path("/sys")
    try:
        fd, name = tempfile.mkstemp(dir=sys_folder)
    except OSError:
        yield sys_folder
        return
    os.close(fd)
    os.unlink(name)
    pytest.skip("running as root, where chmod does not stop writes, and /sys is writable here")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A bench results file, a check results file, a weight file, an empty file, a folder."""
    out = {
        "bench": tmp_path / "bench.json",
        "bench2": tmp_path / "bench2.json",
        "checks": tmp_path / "checks.json",
        "weights": tmp_path / "w.npz",
        "empty": tmp_path / "empty.json",
        "dir": tmp_path / "DIR",
    }
    shutil.copy(DATA / "bench_cpu_small.json", out["bench"])
    shutil.copy(DATA / "bench_cpu_small.json", out["bench2"])
    shutil.copy(DATA / "checks_cells_small.json", out["checks"])
    rb.RNNWeights.random(rb.RNNSpec(2, 3)).save(out["weights"])
    out["empty"].write_bytes(b"")
    out["dir"].mkdir()
    return out


# --- the error boundary ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            rb.SpecError("\x1b[1mbad\x1b[0m size", "use --batch 1"),
            "rnnbench list: error: bad size\nHint: use --batch 1",
        ),
        (
            OSError(errno.EROFS, "Read-only file system", "/mnt/out.json"),
            "rnnbench list: error: /mnt/out.json: Read-only file system\nHint: the filesystem "
            "is read-only",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "/root/x.json"),
            "rnnbench list: error: /root/x.json: Permission denied\nHint: no permission",
        ),
        (
            IsADirectoryError(errno.EISDIR, "Is a directory", "results"),
            "rnnbench list: error: results: Is a directory\nHint: that is a folder",
        ),
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "nope.json"),
            "rnnbench list: error: nope.json: No such file or directory\nHint: check the path",
        ),
        (
            NotADirectoryError(errno.ENOTDIR, "Not a directory", "file.json/x"),
            "rnnbench list: error: file.json/x: Not a directory\nHint: a part of the path",
        ),
        (
            MemoryError("Unable to allocate 238. GiB"),
            "rnnbench list: error: out of memory (Unable to allocate 238. GiB)\nHint: use "
            "smaller sizes",
        ),
    ],
)
def test_every_error_is_one_message_and_a_hint(
    exc: BaseException,
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def boom(args: Any) -> int:
        raise exc

    monkeypatch.setattr(list_cmd, "run", boom)
    code, out, err = run_cli(capsys, "list")
    assert code == 2 and out == ""
    assert err.startswith(expected) and "\x1b" not in err
    assert err.count("\nHint: ") == 1
    # --debug, before or after the command, shows the traceback instead
    for argv in (["--debug", "list"], ["list", "--debug"]):
        with pytest.raises(type(exc)):
            main(argv)


def test_an_error_without_a_hint_gets_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(args: Any) -> int:
        raise rb.RNNBenchError("something broke")

    monkeypatch.setattr(list_cmd, "run", boom)
    assert run_cli(capsys, "list")[2] == (
        "rnnbench list: error: something broke\n"
        "Hint: run `rnnbench list --help` to see what each option takes\n"
    )
    assert "Hint" in format_error("list", OSError("no errno"))


def test_ctrl_c_is_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(list_cmd, "run", interrupted)
    assert run_cli(capsys, "list")[:2] == (130, "")


# --- output paths, before any work -------------------------------------------------------------
def test_unwritable_outputs_are_refused_before_any_work(
    read_only: Path,
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ran: list[Any] = []
    monkeypatch.setattr(bench_pkg, "run_bench", lambda *a, **k: ran.append(a))
    target = read_only / "out.json"
    for argv in (
        ["check", *TINY, "--json", str(target)],
        ["compare", str(files["bench"]), str(files["bench2"]), "--json", str(target)],
        ["convert", str(files["weights"]), "-o", str(read_only / "w.safetensors")],
        ["report", str(files["bench"]), "-o", str(read_only / "report"), "--no-figures"],
        ["bench", "--backends", "numpy", "--out", str(target)],
    ):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2, argv
        assert out == "", argv  # no table, no "read" line: nothing ran
        assert f"error: {read_only}" in err and "cannot be written" in err, err
        assert "Hint: write to a folder you own" in err
    assert ran == []


def test_folders_given_as_files(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    folder = files["dir"]
    cases = [
        (["report", str(folder)], f"error: {folder}: is a folder, not a results file"),
        (
            ["compare", str(folder), str(files["bench"])],
            f"error: {folder}: is a folder, not a bench results file",
        ),
        (["convert", str(folder), "-o", str(folder.parent / "x.pt")], "is a folder"),
        (
            ["convert", str(files["weights"]), "-o", str(folder)],
            f"error: {folder}: is a folder, but -o takes a file name",
        ),
        (["check", *TINY, "--json", str(folder)], "is a folder, but --json takes a file"),
        (["report", str(files["bench"]), "-o", str(files["bench2"])], "but -o takes a folder"),
    ]
    pt = folder.parent / "DIR.pt"
    pt.mkdir()
    cases.append((["convert", str(files["weights"]), "-o", str(pt)], f"{pt}: is a folder"))
    for argv, message in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and message in err and "\nHint: " in err, (argv, err)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "the file is empty"),
        (b"{not json", "is not a JSON file"),
        (b"[1, 2]", "is not a seed notebook record (the top level is a list"),
        (
            (DATA / "bench_cpu_small.json").read_bytes(),
            "is not a seed notebook record (it is a rnnbench.bench/1 file): it lacks graph_seed",
        ),
        (b'{"graph_seed": 35, "num_units": 4}', "it lacks kernel_name"),
    ],
)
def test_seed_notebook_that_is_not_one(
    tmp_path: Path, content: bytes | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "seed.json"
    if content is not None:
        path.write_bytes(content)
    code, out, err = run_cli(capsys, "seed", "--backends", "numpy", "--notebook", str(path))
    assert code == 2 and out == ""
    assert f"rnnbench seed: error: {path}: " in err and message in err
    assert "Hint: " in err


def test_seed_notebook_of_wrong_shapes(
    tmp_path: Path, seed_notebook: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(dict(seed_notebook, output=[[1.0, 2.0]])))
    code, _, err = run_cli(capsys, "seed", "--backends", "numpy", "--notebook", str(path))
    assert code == 2 and "do not fit num_units N = 4" in err


def test_results_files_are_never_overwritten_by_another_kind(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[Any] = []
    monkeypatch.setattr(bench_pkg, "run_bench", lambda *a, **k: ran.append(a))
    before = {name: p.read_bytes() for name, p in files.items() if p.is_file()}
    bench, bench2, checks = (str(files[k]) for k in ("bench", "bench2", "checks"))
    cases = [
        (["compare", bench, bench2, "--json", bench], "is one of this command's inputs"),
        (["compare", bench, bench2, "--json", bench2], "is one of this command's inputs"),
        (["compare", bench, bench2, "--json", checks], "exists and is a rnnbench.checks/1 file"),
        (["check", *TINY, "--json", bench], "exists and is a rnnbench.bench/1 file"),
        (["bench", "--backends", "numpy", "--out", checks], "is a rnnbench.checks/1 file"),
        (["convert", str(files["weights"]), "-o", str(files["weights"])], "inputs"),
    ]
    for argv, message in cases:
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and out == "" and message in err, (argv, err)
        assert "will not overwrite it" in err or "would overwrite it" in err
    assert {name: files[name].read_bytes() for name in before} == before
    assert ran == []
    # an empty file, or one of the same kind, is the command's to replace
    out = files["empty"]
    assert run_cli(capsys, "check", *TINY, "--json", str(out))[0] == 0
    assert json.loads(out.read_text())["schema"] == "rnnbench.checks/1"
    assert run_cli(capsys, "check", *TINY, "--json", str(out))[0] == 0
    # a folder that does not exist yet is made (after the work, where the file goes)
    new = files["dir"] / "new" / "sub" / "c.json"
    assert run_cli(capsys, "check", *TINY, "--json", str(new))[0] == 0 and new.is_file()


def test_a_bench_usage_error_leaves_out_alone(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[Any] = []
    monkeypatch.setattr(bench_pkg, "run_bench", lambda *a, **k: ran.append(a))
    before = files["bench"].read_bytes()
    for bad in (["--hidden-size", "0"], ["--backends", "numpy,nosuch"]):
        code, _, err = run_cli(capsys, "bench", *bad, "--out", str(files["bench"]))
        assert code == 2 and "error: argument" in err
    assert files["bench"].read_bytes() == before and ran == []


# --- one validation for check and bench ----------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--batch", "-1"], "argument --batch: '-1': must be >= 1"),
        (["--seq-len", "0"], "argument --seq-len: '0': must be >= 1"),
        (["--hidden-size", "0"], "argument --hidden-size: '0': must be >= 1"),
        (["--layers", "x"], "argument --layers: 'x' is not a whole number"),
        (["--dtype", "bfloat16"], "unknown dtype 'bfloat16'"),
        (["--dtype", "float32,float16"], "float32 and float64 only"),
        (["--backends", ""], "argument --backends: no backend given"),
        (["--backends", "numpy,,torch"], "has an empty item"),
        (["--backends", "pytorch"], "unknown backend 'pytorch'"),
        (["--device", "tpu"], "argument --device: invalid choice"),
        (["--seed", "-1"], "argument --seed: '-1': must be >= 0"),
        (["--cell", "rnn,,lstm"], "has an empty item"),
    ],
)
def test_check_and_bench_validate_alike(
    option: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("check", "bench"):
        code, out, err = run_cli(capsys, command, *option)
        assert code == 2 and out == "" and message in err, (command, err)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--batch", "1,,2"], "'1,,2' has an empty item"),
        (["--batch", "2,-1"], "in '2,-1': '-1': must be >= 1"),
        (["--threads", "0"], "argument --threads: '0': must be >= 1"),
        (["--timeout", "0"], "argument --timeout: '0': must be > 0"),
        (["--timeout", "nan"], "must be a finite number"),
        (["--min-time", "-1"], "must be >= 0"),
        (["--min-rounds", "0"], "must be >= 1"),
        (["--input-size", "hidden,0"], "'0': must be >= 1"),
        (["--nonlinearity", "tanh,gelu"], "unknown nonlinearity 'gelu'"),
        (["--variants", ""], "an empty list"),
    ],
)
def test_bench_sweep_options(
    option: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "bench", *option)
    assert code == 2 and message in err, err


def test_check_recurrent_norm_and_lengths(capsys: pytest.CaptureFixture[str]) -> None:
    assert "must be > 0" in run_cli(capsys, "check", "--recurrent-norm", "0")[2]
    code, _, err = run_cli(capsys, "check", *TINY, "--lengths", "1:9")
    assert code == 2 and "longer than --seq-len 3" in err


def test_a_case_too_large_for_memory_is_refused_before_allocating(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "check", "--backends", "numpy", "--seq-len", "1000000000")
    assert code == 2 and out == ""
    assert "rnnbench check: error: this check needs about " in err and " GiB of memory" in err
    assert "Hint: use smaller sizes" in err and "MemoryError" not in err
    # the estimate holds x, y and the float64 reference: a machine with 1 KiB free refuses
    # even the default case, and one with plenty runs it
    monkeypatch.setattr(check_cmd, "available_memory", lambda: 2**10)
    assert run_cli(capsys, "check", "--backends", "numpy")[0] == 2
    monkeypatch.setattr(check_cmd, "available_memory", lambda: 2**40)
    assert run_cli(capsys, "check", *TINY)[0] == 0


# --- nothing verified ------------------------------------------------------------------------
def test_check_that_verified_nothing_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c.json"
    code, stdout, _ = run_cli(capsys, "check", *TINY, "--device", "cuda", "--json", str(out))
    assert code == 3
    assert "nothing was verified (exit 3): every backend was skipped" in stdout
    assert "- numpy (float32): backend 'numpy' has no device 'cuda'" in stdout
    rows = json.loads(out.read_text())["checks"][0]["rows"]
    assert [r["status"] for r in rows] == ["skipped"]  # the file still records the skips
    assert "3 nothing was verified" in " ".join(check_cmd.EPILOG.split())  # documented


def test_assert_close_refuses_a_comparison_of_nothing() -> None:
    w = rb.RNNWeights.random(rb.RNNSpec(2, 3))
    x = np.zeros((1, 2, 2))
    skipped = rb.compare(w, x, backends=["numpy"], device="cuda")
    assert not skipped.compared and skipped.passed  # passed: nothing failed, but...
    with pytest.raises(NothingComparedError, match="(?s)nothing was compared.*no device 'cuda'"):
        skipped.assert_close()
    with pytest.raises(rb.ToleranceError, match="no backend"):
        rb.compare(w, x, backends=[]).assert_close()
    rb.compare(w, x, backends=["numpy"]).assert_close()


def test_check_json_records_every_input_and_the_machine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c.json"
    argv = ["check", *TINY, "--cell", "rnn,gru-reset-before", "--seed", "7",
            "--recurrent-norm", "0.5", "--h0", "--lengths", "1:3", "--grad", "--no-bias",
            "--nonlinearity", "relu", "--dtype", "float64,float32", "--json", str(out)]  # fmt: skip
    assert run_cli(capsys, *argv)[0] == 0
    data = json.loads(out.read_text())
    inputs = data["inputs"]
    assert tuple(inputs) == check_cmd.INPUT_KEYS
    assert inputs["cells"] == ["rnn", "gru-reset-before"] and inputs["backends"] == ["numpy"]
    assert (inputs["seed"], inputs["recurrent_norm"], inputs["h0"]) == (7, 0.5, True)
    assert (inputs["lengths"], inputs["mask"], inputs["grad"]) == ([1, 3], None, True)
    assert (inputs["dtypes"], inputs["device"], inputs["bias"]) == (
        ["float64", "float32"],
        "cpu",
        False,
    )
    assert (inputs["batch"], inputs["seq_len"], inputs["input_size"]) == (2, 3, 2)
    assert data["machine"]["hostname"] and "versions" in data["machine"]
    # the recorded command repeats the run: the same inputs, the same numbers
    again = tmp_path / "again.json"
    words = shlex.split(inputs["command"])
    assert words[:2] == ["rnnbench", "check"]
    assert run_cli(capsys, *words[1:], "--json", str(again))[0] == 0
    second = json.loads(again.read_text())
    assert second["inputs"] == inputs
    assert second["checks"] == data["checks"]


# --- atomic writes that follow the umask ---------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_follow_the_umask(
    umask: int, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = files["dir"]
    old = os.umask(umask)
    try:
        rb.RNNWeights.random(rb.RNNSpec(2, 3)).save(folder / "w.safetensors")
        fileio.atomic_write_text(folder / "t.json", "{}")
        assert run_cli(capsys, "check", *TINY, "--json", str(folder / "c.json"))[0] == 0
        argv = ["convert", str(files["weights"]), "-o", str(folder / "w.tf1.npz")]
        assert run_cli(capsys, *argv)[0] == 0
        argv = ["compare", str(files["bench"]), str(files["bench2"]), "--json"]
        assert run_cli(capsys, *argv, str(folder / "cmp.json"))[0] == 0
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert modes == dict.fromkeys(
        ["w.safetensors", "t.json", "c.json", "w.tf1.npz", "cmp.json"], 0o666 & ~umask
    )  # and no temporary file left behind


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), fileio.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk gone")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]
    with pytest.raises(FileNotFoundError, match="the folder does not exist"):
        fileio.atomic_write_bytes(tmp_path / "no" / "r.json", b"")


# --- worker deaths and library messages ----------------------------------------------------------
def _fake_worker(code: str) -> Worker:
    """A Worker around a tiny Python process (no rnnbench worker, no numpy import)."""
    worker = Worker.__new__(Worker)
    worker.name = "fake"
    worker._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the test
    worker._lock = threading.Lock()
    worker.proc = subprocess.Popen(
        [sys.executable, "-S", "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=worker._stderr,
    )
    worker.proc.wait(timeout=30)
    return worker


def test_a_sigkilled_worker_says_so() -> None:
    worker = _fake_worker("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    try:
        with pytest.raises(rb.BackendRuntimeError) as died:
            worker.request({"op": "forward"}, timeout=10)
    finally:
        worker._stderr.close()
    message = str(died.value)
    assert "its worker process died (exit code -9) during 'forward': killed by signal " in message
    assert "SIGKILL (9)" in message and "out-of-memory killer" in message
    assert "It wrote nothing to stderr" in message and "Last lines" not in message


def test_a_dead_workers_stderr_is_quoted_without_escapes() -> None:
    worker = _fake_worker(
        "import sys; sys.stderr.write('\\x1b[31mFatal Python error\\x1b[0m: boom\\n'); sys.exit(3)"
    )
    try:
        with pytest.raises(rb.BackendRuntimeError) as died:
            worker.request({"op": "load"}, timeout=10)
    finally:
        worker._stderr.close()
    message = str(died.value)
    assert (
        "died (exit code 3) during 'load'. Last lines of its stderr:\nFatal Python error: boom"
        in (message)
    )
    assert "\x1b" not in message and "signal" not in message


def test_library_messages_lose_their_escape_sequences() -> None:
    assert strip_ansi("\x1b[1m\x1b[31mRuntimeError\x1b[0m: \x1b]8;;u\x07x\x1b]8;;\x07 \x1b(B") == (
        "RuntimeError: x "
    )
    from backends.numpy_backend import NumpyCell

    class Colourful(NumpyCell):
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("\x1b[31mCUDA error\x1b[0m: no kernel image")

    w = rb.RNNWeights.random(rb.RNNSpec(2, 3))
    result = rb.compare(w, np.zeros((1, 2, 2)), backends=["numpy"], cells={
        ("numpy", "float32"): Colourful()})  # fmt: skip
    assert result.rows[0].reason == "RuntimeError: CUDA error: no kernel image"


# --- convert: flags in hints, the Keras relu note ------------------------------------------------
def test_convert_hints_name_the_flags(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rnnbench import formats

    def two_rnns(*args: Any, **kwargs: Any) -> Any:
        raise rb.LayoutError(
            "2 keys end in 'weight_ih_l0' in the state dict",
            "pass prefix='name.of.the.rnn.' to pick the RNN's keys",
        )

    monkeypatch.setattr(formats, "read", two_rnns)
    out = files["dir"] / "o.npz"
    code, _, err = run_cli(capsys, "convert", str(files["weights"]), "-o", str(out))
    assert code == 2
    assert "Hint: pass --prefix name.of.the.rnn. to pick the RNN's keys" in err
    assert "prefix=" not in err


def test_keras_file_of_a_simple_rnn_notes_the_activation_it_cannot_know(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("h5py")
    from rnnbench import formats

    relu = rb.RNNWeights.random(rb.RNNSpec(2, 3, nonlinearity="relu"))
    path = tmp_path / "m.weights.h5"
    formats.write(relu, path)
    with pytest.warns(UserWarning, match="does not record a SimpleRNN's activation"):
        assert formats.read(path).spec.nonlinearity == "tanh"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert formats.read(path, nonlinearity="relu").spec.nonlinearity == "relu"
    code, out, _ = run_cli(capsys, "convert", str(path), "-o", str(tmp_path / "o.npz"))
    assert code == 0
    assert "note: " in out and "--nonlinearity relu" in out


# --- list: cuda only where the build has it ------------------------------------------------------
def test_list_leaves_cuda_out_for_cpu_only_builds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(list_cmd, "_torch_cuda", lambda: "a CPU-only build of torch")
    monkeypatch.setattr(list_cmd, "_jax_cuda", lambda: None)
    monkeypatch.setattr("rnnbench.bench.machine.cuda_unavailable_reason", lambda: None)
    code, out, _ = run_cli(capsys, "list", "--json")
    rows = {r["backend"]: r for r in json.loads(out)}
    for name in ("torch", "keras-torch"):
        if rows[name]["available"]:
            assert rows[name]["devices"] == ["cpu"]
            assert rows[name]["devices_unavailable"] == {"cuda": "a CPU-only build of torch"}
    if rows["jax"]["available"]:
        assert rows["jax"]["devices"] == ["cpu", "cuda"]
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    if rows["torch"]["available"]:
        assert "cuda not listed for torch, keras-torch: a CPU-only build of torch" in out


def test_cpu_only_torch_is_told_from_its_files() -> None:
    torch_version = _dist_version("torch")
    if torch_version is None or "+cpu" not in torch_version:
        pytest.skip(f"needs the CPU build of torch (found {torch_version})")
    assert list_cmd._torch_cuda() == "a CPU-only build of torch"


def _dist_version(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# --- the Python API's refusals -------------------------------------------------------------------
def test_api_refusals_are_rnnbench_errors() -> None:
    spec = rb.RNNSpec(2, 3, num_layers=2)
    with pytest.raises(rb.SpecError, match="takes an RNNSpec, got dict") as info:
        rb.RNNWeights.random({"input_size": 2, "hidden_size": 3})  # type: ignore[arg-type]
    assert "RNNSpec.from_dict" in str(info.value)
    with pytest.raises(rb.SpecError, match="seed must be a whole number >= 0"):
        rb.RNNWeights.random(spec, seed=-1)
    w = rb.RNNWeights.random(spec)
    assert w[1, 0] is w.layers[1][0] and w[-1, 0] is w.layers[1][0]
    with pytest.raises(rb.LayoutError, match=r"weights\[2, 0\] is out of range") as info:
        w[2, 0]
    assert "Hint: use layer 0..1, direction 0 (forward)" in str(info.value)
    with pytest.raises(rb.LayoutError, match="out of range"):
        w[0, 1]
    with pytest.raises(rb.LayoutError, match="two whole numbers"):
        w[0]  # type: ignore[index]
    cell = ProcessCell.__new__(ProcessCell)  # no worker: the check comes first
    cell.name = "keras"
    with pytest.raises(rb.SpecError, match="load\\(\\) takes RNNWeights, got dict"):
        cell.load(w.arrays())  # type: ignore[arg-type]


def test_x_dtypes(capsys: pytest.CaptureFixture[str]) -> None:
    """float64 into a float32 cell is a cast; float16, bfloat16 and integer arrays are refused."""
    cell = rb.get_backend("numpy", dtype="float32")
    cell.load(rb.RNNWeights.random(rb.RNNSpec(2, 3)))
    x = np.random.default_rng(0).standard_normal((1, 4, 2))
    y64, _ = cell.forward(x)
    y32, _ = cell.forward(x.astype(np.float32))
    assert y64.dtype == np.float32 and np.array_equal(y64, y32)
    assert cell.forward([[[1, 2], [3, 4]]])[0].dtype == np.float32  # a list: numbers
    for bad, hint in ((np.float16, "lost digits"), (np.int64, "meant as numbers")):
        with pytest.raises(rb.DTypeError, match=f"x has dtype {np.dtype(bad)}") as info:
            cell.forward(x.astype(bad))
        assert hint in str(info.value)


# --- the property: no traceback, documented exit codes, no file damaged ----------------------
_PARSER = build_parser()
_SUBPARSERS = _PARSER._subparsers._group_actions[0].choices  # type: ignore[union-attr]
_OUTPUT_FLAGS = ("-o", "--output", "--out", "--json")
# values for any option: valid small ones, invalid ones, huge ones that must be refused
_VALUES = ["", "0", "-1", "1", "2", "3", "1,,2", ",", "abc", "nan", "inf", "0.5", "1e3",
           "1000000000000", "bfloat16", "float32", "float64,float32", "numpy", "torch", "cuda",
           "cpu", "random", "1:2", "3:1", "all", "lstm,gru", "relu", "full,ragged", "hidden",
           "npz", "safetensors", "tf1-ckpt", "nosuch"]  # fmt: skip
_FILES = ["empty.json", "garbage.bin", "garbage.json", "list.json", "bench.json", "checks.json",
          "w.npz", "DIR", "missing.json", "out.json", "out.npz", "out.safetensors", "rep",
          "DIR/x.json", "w.npz/x.json"]  # fmt: skip
_SAFE_FORMATS = ["npz", "safetensors", "bogus"]  # no format that starts a worker (tf1-ckpt)
# values an option takes, drawn twice as often as the rest, so that runs get far as well
_GOOD = {
    "batch": ["1", "2", "3"],
    "seq_len": ["1", "2", "3"],
    "input_size": ["1", "2"],
    "hidden_size": ["1", "2"],
    "layers": ["1", "2"],
    "dtype": ["float32", "float64", "float64,float32"],
    "cell": ["rnn", "lstm", "all", "gru-reset-before"],
    "seed": ["0", "7"],
    "recurrent_norm": ["0.5", "1.5"],
    "lengths": ["random", "1:1"],
    "threshold": ["0.05", "0"],
    "alpha": ["0.05"],
    "timeout": ["30"],
    "prefix": ["l0."],
    "forget_bias": ["1.0"],
}
_GOOD_INPUTS = ["bench.json", "checks.json", "w.npz"]
_GOOD_PATHS = {
    "output": ["out.npz", "out.safetensors", "w.tf1.npz"],
    "out": ["out.json", "rep", "bench.json"],
    "json": ["out.json", "checks.json"],
    "notebook": ["seed.json"],
}
_WEIGHTS = rb.RNNWeights.random(rb.RNNSpec(2, 3))


def _make_files(root: Path) -> None:
    shutil.copy(DATA / "bench_cpu_small.json", root / "bench.json")
    shutil.copy(DATA / "checks_cells_small.json", root / "checks.json")
    _WEIGHTS.save(root / "w.npz")
    (root / "empty.json").write_bytes(b"")
    (root / "garbage.bin").write_bytes(bytes(range(256)) * 3)
    (root / "garbage.json").write_bytes(b'{"schema": "rnnbench.bench/1", "results": [{"a"')
    (root / "list.json").write_text("[1, 2, 3]")
    (root / "DIR").mkdir()
    shutil.copy(DATA / "seed_notebook.json", root / "seed.json")


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p): (p.read_bytes(), p.stat().st_mode)
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


@st.composite
def command_lines(draw: st.DrawFn) -> tuple[str, list[str]]:
    name = draw(st.sampled_from(sorted(_SUBPARSERS)))
    parser = _SUBPARSERS[name]
    argv: list[str] = [name]
    options = [a for a in parser._actions if a.option_strings and a.dest not in ("help", "debug")]
    positionals = [a for a in parser._actions if not a.option_strings]
    files = st.sampled_from(_FILES).map(lambda f: "@" + f)
    good_files = st.sampled_from(_GOOD_INPUTS).map(lambda f: "@" + f)
    file_or_text = st.one_of(files, st.sampled_from(_VALUES))
    chosen = draw(st.lists(st.sampled_from(options), max_size=4)) if options else []
    for action in [*(a for a in options if a.required), *chosen]:
        flag = draw(st.sampled_from(action.option_strings))
        if action.nargs == 0:
            argv.append(flag)
            continue
        if action.dest in ("from_format", "to_format"):
            value = draw(st.sampled_from(_SAFE_FORMATS))
        elif action.dest in _GOOD_PATHS:
            good = st.sampled_from(_GOOD_PATHS[action.dest]).map(lambda f: "@" + f)
            value = draw(st.one_of(good, good, file_or_text))
        elif action.choices is not None:
            value = draw(st.sampled_from([*map(str, action.choices), "bogus"]))
        else:
            good = st.sampled_from(_GOOD.get(action.dest, _VALUES))
            value = draw(st.one_of(good, good, st.sampled_from(_VALUES)))
        argv += [flag, value] if action.nargs != "?" or draw(st.booleans()) else [flag]
    for action in positionals:
        count = 1 if action.nargs is None else draw(st.integers(1, 3))
        argv += [draw(st.one_of(good_files, good_files, file_or_text)) for _ in range(count)]
    return name, argv


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(command=command_lines())
def test_property_any_command_line_fails_cleanly(
    command: tuple[str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    name, argv = command
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _make_files(root)
        argv = [str(root / a[1:]) if a.startswith("@") else a for a in argv]
        # Never real work: check and seed on numpy alone (in this process), the replay and
        # the benchmark replaced, the report without figures.
        if name in ("check", "seed"):
            argv += ["--backends", "numpy"]
        if name == "report":
            argv.append("--no-figures")
        before = _snapshot(root)
        summary = bench_pkg.BenchSummary(None, [{"status": "ok"}])
        cwd = os.getcwd()
        os.chdir(root)  # a value taken as a path ('-o 0', report's default -o) lands here
        with mock.patch.object(bench_pkg, "run_bench", return_value=summary), mock.patch(
            "rnnbench.commands.seed.replay", return_value=(None, ["replay skipped"])
        ):  # fmt: skip
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse: --help, --version, a usage error
                code = exc.code if isinstance(exc.code, int) else 2
                assert code in (0, 2), argv
            finally:
                os.chdir(cwd)
        out, err = capsys.readouterr()
        event(f"{name} exit {code}")  # --hypothesis-show-statistics shows what was reached
        assert code in (0, 1, 2, 3), (argv, code)
        assert "Traceback" not in out + err, argv
        if code == 2 and not err.startswith("usage:"):
            assert f"rnnbench {name}: error: " in err and "\nHint: " in err, (argv, err)
        outputs = {
            str(root / argv[i + 1]) for i, a in enumerate(argv[:-1]) if a in _OUTPUT_FLAGS
        } | ({str(root / "report")} if name == "report" else set())  # report's default -o
        after = _snapshot(root)
        for path, content in before.items():
            if after.get(path) != content:
                written = path in outputs or any(path.startswith(o + os.sep) for o in outputs)
                assert written and code in (0, 1, 3), (argv, path, code, err)


def test_the_property_test_reaches_every_command() -> None:
    assert set(_SUBPARSERS) == {"list", "check", "seed", "bench", "report", "compare", "convert"}
