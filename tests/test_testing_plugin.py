"""rnnbench.testing as others use it: the plugin and ``parametrize_with_checks`` run (through
pytest's ``pytester``) against the small outside implementation of docs/testing.md, which
passes, and against deliberately wrong ones, each caught by the check meant for its fault with
a message naming it; and a ``pip install`` of the package into a fresh venv runs the suite from
a three-line test file in another folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import doc_blocks
import pytest

from rnnbench.testing import CHECKS, check_cases, parametrize_with_checks, run_checks

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
# The plugin under its module name, whether or not the entry point is installed here.
PLUGIN = ("-p", "no:rnnbench", "-p", "rnnbench.testing.plugin", "-p", "no:cacheprovider")
# A -k expression for the vanilla RNN's cases: "rnn" alone also matches the folder names
# above the suite (rnnbench/testing/test_checks.py).
RNN_ONLY = "not lstm and not gru"


def tinyrnn_source() -> str:
    """The outside implementation of docs/testing.md (its block that defines TinyRNN)."""
    blocks = doc_blocks.extract(ROOT / "docs" / "testing.md")
    (block,) = [b for b in blocks if "class TinyRNN" in b.code]
    return block.code


# Deliberately wrong implementations, each one fault on top of the correct TinyRNN.
WRONG = textwrap.dedent(
    """
    import numpy as np
    from tinyrnn import TinyRNN


    class ReverseFinalState(TinyRNN):
        # the reverse direction's final state taken at t=T-1, where the forward one ends
        def run(self, prepared):
            y, h_n = super().run(prepared)
            if len(self.layers[-1]) == 2:
                h_n = h_n.copy()
                h_n[-1] = y[:, -1, h_n.shape[-1]:]
            return y, h_n


    class DropBiasWithH0(TinyRNN):
        def prepare(self, x, h0=None):
            self.h0_given = h0 is not None
            return super().prepare(x, h0)

        def run(self, prepared):
            if not self.h0_given:
                return super().run(prepared)
            kept = self.layers
            self.layers = [[(w_ih, w_hh, 0 * b) for w_ih, w_hh, b in row] for row in kept]
            try:
                return super().run(prepared)
            finally:
                self.layers = kept


    class IgnoreH0(TinyRNN):
        def prepare(self, x, h0=None):
            return super().prepare(x, None)


    class TransposedRecurrent(TinyRNN):
        def _load(self, weights):
            super()._load(weights)
            self.layers = [[(w_ih, w_hh.T, b) for w_ih, w_hh, b in row] for row in self.layers]


    class Float32Inside(TinyRNN):
        def _load(self, weights):
            super()._load(weights.astype("float32"))

        def run(self, prepared):
            x, h0 = prepared
            y, h_n = super().run((x.astype("float32"), h0.astype("float32")))
            return y.astype(self.dtype), h_n.astype(self.dtype)


    class InputInPlace(TinyRNN):
        def prepare(self, x, h0=None):
            xs, h = super().prepare(x, h0)
            np.multiply(xs, 0.5, out=xs)  # scales the caller's array when no copy was made
            return xs, h
    """
)

# (wrong implementation, the check meant for it, what its message must say)
FAULTS = [
    ("ReverseFinalState", "check_reverse_final_state", "the reverse direction's final state"),
    ("DropBiasWithH0", "check_bias", "the biases are dropped when h0 is given"),
    ("IgnoreH0", "check_initial_state", "h0 is ignored"),
    ("TransposedRecurrent", "check_square_weights", "the recurrent kernel is transposed"),
    ("Float32Inside", "check_float64_precision", "the float64 cell computes in float32"),
    ("InputInPlace", "check_input_not_modified", "modified its input x in place"),
]


@pytest.fixture
def outside(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A folder with the outside implementation (tinyrnn.py) and the wrong ones (wrong.py).
    Inner runs load only the plugins they name: autoloading every installed one takes seconds
    per run here."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(tinyrnn=tinyrnn_source(), wrong=WRONG)
    pytester.syspathinsert()
    return pytester


def rnn_cases(*skip: str) -> int:
    """How many check cases a vanilla-RNN-only implementation runs (the others skip)."""
    return sum(1 for c in check_cases() if c.kind in ("rnn", "any") and c.check.name not in skip)


def test_correct_implementation_passes(outside: pytest.Pytester) -> None:
    result = outside.runpytest_inprocess(*PLUGIN, "--rnnbench-cell=tinyrnn:make_cell", "-v")
    unsupported = ("check_lengths", "check_mask", "check_gradients", "check_gradients_lengths")
    result.assert_outcomes(
        passed=rnn_cases(*unsupported), skipped=len(check_cases()) - rnn_cases(*unsupported)
    )
    result.stdout.fnmatch_lines(
        [
            "*test_check?check_reverse_final_state?rnn-float32?? PASSED*",
            "*test_check?check_reverse_final_state?lstm-float32?? SKIPPED*",
        ]
    )


@pytest.mark.parametrize(("factory", "check", "fault"), FAULTS, ids=[f[0] for f in FAULTS])
def test_wrong_implementation_is_caught(
    outside: pytest.Pytester, factory: str, check: str, fault: str
) -> None:
    # The vanilla RNN's case alone: TinyRNN computes no other cell.
    result = outside.runpytest_inprocess(
        *PLUGIN, f"--rnnbench-cell=wrong:{factory}", "-k", f"{check} and {RNN_ONLY}"
    )
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert fault in out, out
    assert f"{check}[rnn-" in out


def test_table_and_first_bad_element_in_the_message(outside: pytest.Pytester) -> None:
    result = outside.runpytest_inprocess(
        *PLUGIN, "--rnnbench-cell=wrong:IgnoreH0", "-k", f"check_initial_state and {RNN_ONLY}"
    )
    result.stdout.fnmatch_lines(
        [
            "*IgnoreH0 (float32), 2 bidirectional layers, h0 given: h0 is ignored*",
            "*first bad element: y[[]0, 0, *] (batch 0, step t=0, feature *) is *, expected *",
            "backend *dtype *device *max abs err*first bad step*verdict",
            "IgnoreH0 *float32 *cpu *t=0 (0, *)*FAIL: beyond tolerance",
        ]
    )


def test_plugin_is_inert_without_the_option(outside: pytest.Pytester) -> None:
    outside.makepyfile(test_own="def test_own():\n    assert True\n")
    result = outside.runpytest_inprocess(*PLUGIN)
    result.assert_outcomes(passed=1)


def test_parametrize_with_checks_and_required_features(outside: pytest.Pytester) -> None:
    outside.makepyfile(
        test_cell="""
        from rnnbench.testing import parametrize_with_checks
        from tinyrnn import make_cell

        @parametrize_with_checks([make_cell], required=["lengths"])
        def test_my_cell(cell, check):
            check(cell)
        """
    )
    result = outside.runpytest_inprocess(*PLUGIN, "-k", "check_shapes or check_lengths", "-v")
    # check_lengths fails instead of skipping: lengths are required of this implementation
    result.assert_outcomes(passed=1, skipped=3, failed=4)
    result.stdout.fnmatch_lines(
        ["*make_cell must support lengths, but: make_cell does not declare takes_lengths = True*"]
    )


def test_bad_option_is_a_usage_error(outside: pytest.Pytester) -> None:
    result = outside.runpytest_inprocess(*PLUGIN, "--rnnbench-cell=tinyrnn")
    result.stderr.fnmatch_lines(["*expected MODULE:FACTORY*"])
    result = outside.runpytest_inprocess(*PLUGIN, "--rnnbench-cell=no_such_module:f")
    result.stderr.fnmatch_lines(["*cannot import 'no_such_module'*"])


def test_run_checks_without_pytest_runner(outside: pytest.Pytester) -> None:
    import wrong  # type: ignore[import-not-found]

    results = run_checks(wrong.IgnoreH0, select=["check_initial_state"])
    first = results[0]
    assert (first.id, first.outcome) == ("check_initial_state[rnn-float32]", "failed")
    assert "h0 is ignored" in results[0].message
    assert {r.outcome for r in results[1:]} == {"skipped"}


def test_every_check_has_a_doc_and_unique_cases() -> None:
    ids = [c.id for c in check_cases()]
    assert len(ids) == len(set(ids))
    assert all(c.doc for c in CHECKS)
    mark = parametrize_with_checks([lambda dtype, device: None], select=["check_bias"])
    assert mark.args[0] == ("cell", "check") and len(mark.args[1]) == 4


def test_pip_install_into_a_fresh_venv(tmp_path: Path) -> None:
    """A non-editable install of this repo into a fresh venv (numpy, pytest and hypothesis come
    from this environment's site-packages), and a three-line test file in another folder."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in ("rnnbench", "backends"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # This environment's packages after the venv's own (a plain path: its .pth files, this
    # checkout's editable install among them, are not run).
    here = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    Path(purelib, "outer.pth").write_text(here + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--ignore-installed", "--no-index", "--disable-pip-version-check", "-q", str(src)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    if pip.returncode != 0:
        pytest.skip(f"pip cannot build the package offline here: {pip.stderr[-500:]}")
    project = tmp_path / "project"
    project.mkdir()
    (project / "tinyrnn.py").write_text(tinyrnn_source())
    (project / "test_tinyrnn.py").write_text(
        "from rnnbench.testing import parametrize_with_checks\n"
        "from tinyrnn import make_cell\n"
        "@parametrize_with_checks([make_cell])\n"
        "def test_my_cell(cell, check):\n"
        "    check(cell)\n"
    )
    where = subprocess.run(
        [str(python), "-c", "import rnnbench; print(rnnbench.__file__)"],
        cwd=project, capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(purelib), where.stdout  # the installed copy, not this checkout
    pytest_ = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    # The test file, and the plugin through its installed entry point; one check each (the
    # whole suite on this implementation runs in test_correct_implementation_passes).
    for args in (
        ["test_tinyrnn.py", "-k", "check_reverse_final_state"],
        ["--rnnbench-cell=tinyrnn:make_cell", "-k", "check_bias"],
    ):
        run = subprocess.run(
            pytest_ + args, cwd=project, capture_output=True, text=True, env=env, timeout=300
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        assert "1 passed, 3 skipped" in run.stdout, run.stdout[-3000:]
