"""TF1 cell weights (``BasicRNNCell``, ``LSTMCell``, ``GRUCell``) as arrays: an ``.npz`` (suffix
``.tf1.npz``) whose keys are the TF1 variable names (``rnn/basic_rnn_cell/kernel``,
``rnn/lstm_cell/kernel``, ``rnn/gru_cell/gates/kernel``, ... see :mod:`rnnbench.formats.tf1_names`),
so that ``{v.name[:-2]: sess.run(v) for v in tf.compat.v1.global_variables()}`` saved with
``np.savez`` is such a file, and its entries assign straight back to the graph's variables.

A plain ``.npz`` being read is taken for this format when it has no ``rnnbench_spec`` key and
has a cell variable key (``.../basic_rnn_cell/kernel``, ``.../lstm_cell/kernel``, ...). The file
holds one bias per direction (b_ih + b_hh), no nonlinearity (``--nonlinearity``) and no LSTM
``forget_bias`` (``--forget-bias``, TF1's default 1.0).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from rnnbench.errors import WeightFileError
from rnnbench.formats import tf1_names
from rnnbench.formats._common import atomic_path, require_file, with_nonlinearity
from rnnbench.spec import RNNSpec
from rnnbench.weightio import SPEC_KEY
from rnnbench.weights import RNNWeights

CARRIES_NONLINEARITY = False


def two_biases(spec: RNNSpec) -> bool:
    return False


def _load(path: Path) -> dict[str, np.ndarray]:
    require_file(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except ValueError as exc:
        raise WeightFileError(
            f"{path} needs pickle to read ({exc}); rnnbench never unpickles weight files",
            "save plain float arrays with np.savez",
        ) from exc
    except (zipfile.BadZipFile, EOFError, OSError, AttributeError, TypeError) as exc:
        raise WeightFileError(f"{path} is not a readable .npz archive ({exc})") from exc


def looks_like_tf1(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as data:
            names = list(data.files)
    except Exception:
        return False  # let the reader of the suffix's format say what is wrong
    return SPEC_KEY not in names and bool(tf1_names.cell_variables(names))


def read(
    path: Path,
    *,
    nonlinearity: str | None = None,
    prefix: str | None = None,
    forget_bias: float = 1.0,
    reset_after: bool | None = None,
) -> RNNWeights:
    arrays = _load(path)
    weights = tf1_names.from_named_arrays(
        arrays,
        nonlinearity=nonlinearity or "tanh",
        prefix=prefix,
        where=str(path),
        forget_bias=forget_bias,
    )
    return with_nonlinearity(weights, nonlinearity, False, path)


def write(weights: RNNWeights, path: Path, *, forget_bias: float = 1.0) -> list[str]:
    arrays = tf1_names.to_named_arrays(weights, forget_bias)  # refuses a reset-after GRU
    with atomic_path(path, ".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    return tf1_names.lstm_note(weights.spec, forget_bias)
