"""``rnnbench seed``: the notebook's replay in the tf1 worker, its printed facts, the seed table,
the exit codes, and the skip when TensorFlow is missing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rnnbench as rb
import rnnbench.registry
from rnnbench.cli import main
from rnnbench.commands.seed import as_printed, check_kernel, load_notebook


def test_shipped_record_is_the_test_record(seed_notebook: dict) -> None:
    assert load_notebook() == seed_notebook


def test_check_kernel_is_exact_on_the_printed_digits(seed_notebook: dict) -> None:
    recorded = seed_notebook["kernel"]
    kernel = np.array(recorded, np.float32)
    np.testing.assert_array_equal(as_printed(kernel), np.array(recorded))
    assert check_kernel(kernel, recorded)[0]
    # -0.034170628 is printed as -0.03417063: a float32 1 ulp away still prints the same.
    assert check_kernel(np.float32([[-0.034170628]]), [[-0.03417063]])[0]
    off = kernel.copy()
    off[4, 1] = np.nextafter(off[4, 1], np.float32(1))  # 0.48419607 -> 0.4841961: digits differ
    ok, lines = check_kernel(off, recorded)
    assert not ok and "1 element(s) differ" in lines[0]
    assert not check_kernel(kernel.astype(np.float64), recorded)[0]  # float32 only


def test_seed_command_replays_and_prints_the_facts(
    cells: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    cells.get("tf1", "float32")  # skips without tensorflow/tf-keras; starts the worker once
    assert main(["seed", "--backends", "numpy,tf1"]) == 0
    out = capsys.readouterr().out
    for fact in (
        "state size: 4",
        "rnn/basic_rnn_cell/kernel:0  (6, 4)",
        "rnn/basic_rnn_cell/bias:0  (4,)",
        "[ 0.39129794  0.27990448 -0.03417063 -0.13734835]",  # the kernel's first row
        "[ok] kernel equals the seed's kernel exactly",
        "21 of 24 elements bit for bit",
        "[ok] output vs the seed's",
        "[ok] final state vs the seed's",
    ):
        assert fact in out, fact
    assert "FAIL" not in out
    rows = {line.split()[0]: line for line in out.splitlines()[-2:]}
    assert set(rows) == {"numpy", "tf1"}
    assert all(line.endswith("PASS") for line in rows.values())


def test_seed_command_fails_on_a_wrong_record(
    cells: Any, tmp_path: Path, seed_notebook: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    cells.get("tf1", "float32")
    wrong = dict(seed_notebook, output=[[[-0.7551, -0.10510498, -0.40611452, 0.17652836]]])
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(wrong))
    assert main(["seed", "--backends", "numpy", "--notebook", str(path)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] output vs the seed's: max abs diff 9.00e-05" in out
    assert "the replay does not match the seed notebook" in out


def test_seed_command_without_tensorflow_skips_the_replay(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = rnnbench.registry._load_registry()
    missing = dataclasses.replace(registry["tf1"], requires=("rnnbench_test_no_such_module",))
    monkeypatch.setitem(registry, "tf1", missing)
    assert main(["seed", "--backends", "numpy,tf1"]) == 0
    out = capsys.readouterr().out
    assert "Replay SKIPPED: the tf1 backend is unavailable" in out
    assert "rnnbench_test_no_such_module" in out
    lines = out.splitlines()
    numpy_row = next(line for line in lines if line.startswith("numpy "))
    tf1_row = next(line for line in lines if line.startswith("tf1 "))
    assert numpy_row.endswith("PASS") and "skipped" in tf1_row


def test_unknown_backend_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["seed", "--backends", "numpy,nosuch"]) == 2
    assert "unknown backend 'nosuch'" in capsys.readouterr().err


def test_seed_weights_round_trip(seed_notebook: dict, seed_weights: rb.RNNWeights) -> None:
    kernel, bias = seed_weights.to_tf1()
    np.testing.assert_array_equal(kernel, np.float32(seed_notebook["kernel"]))
    np.testing.assert_array_equal(bias, np.float32(seed_notebook["bias"]))
