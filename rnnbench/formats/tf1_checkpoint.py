"""A TF1 ``Saver`` checkpoint of ``BasicRNNCell``, ``LSTMCell`` or ``GRUCell`` weights: the prefix
``NAME.ckpt`` and its files
``NAME.ckpt.index`` and ``NAME.ckpt.data-00000-of-00001`` (no ``.meta`` graph, no
``checkpoint`` state file: rebuild the graph and ``Saver().restore(sess, "NAME.ckpt")``).

Variable names are TF1's own (see :mod:`rnnbench.formats.tf1_names`). Both directions of the
work run in rnnbench's TF1 worker process (``TF_USE_LEGACY_KERAS=1`` must be set before
TensorFlow is imported, and TF1 graph mode is process-wide): reading with
``tf.train.load_checkpoint``; writing by building the very graph (the cell under
``dynamic_rnn`` / ``MultiRNNCell`` / ``bidirectional_dynamic_rnn``), assigning the weights to its
variables and saving with ``tf.compat.v1.train.Saver``, so the names are the ones TF1 makes.
Like the TF1 arrays, it holds one bias per direction, no nonlinearity and no LSTM
``forget_bias`` (an argument; TF1's default 1.0), and cannot hold a reset-after GRU.
Writes land in a temporary prefix and are renamed into place, data file first, index last.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rnnbench.errors import BackendUnavailableError, WeightFileError
from rnnbench.formats import tf1_names
from rnnbench.formats._common import with_nonlinearity
from rnnbench.spec import RNNSpec
from rnnbench.weights import RNNWeights

CARRIES_NONLINEARITY = False
DATA_SUFFIX = ".data-00000-of-00001"


def checkpoint_prefix(path: Path) -> Path:
    """``x.ckpt`` from ``x.ckpt``, ``x.ckpt.index`` or ``x.ckpt.data-...``."""
    name = path.name
    for ending in (".index", DATA_SUFFIX):
        if name.endswith(ending):
            return path.with_name(name[: -len(ending)])
    return path


def two_biases(spec: RNNSpec) -> bool:
    return False


def _worker() -> Any:
    from rnnbench.process import pooled_worker
    from rnnbench.registry import backend_info

    info = backend_info("tf1")
    reason = info.unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(f"TF1 checkpoints need TensorFlow 1 cells: {reason}")
    return pooled_worker(info)


def read(
    path: Path,
    *,
    nonlinearity: str | None = None,
    prefix: str | None = None,
    forget_bias: float = 1.0,
    reset_after: bool | None = None,
) -> RNNWeights:
    ckpt = checkpoint_prefix(path)
    if not Path(str(ckpt) + ".index").is_file():
        raise WeightFileError(
            f"{ckpt}.index does not exist: {path} is not a TF1 checkpoint",
            "pass the checkpoint prefix (model.ckpt) or its .index file",
        )
    header, arrays = _worker().call(
        "rnnbench.formats.tf1_checkpoint:worker_read", path=str(ckpt), timeout=300
    )
    if not arrays:
        weights = tf1_names.from_named_arrays(
            dict.fromkeys(header["names"]), nonlinearity="tanh", prefix=prefix, where=str(ckpt)
        )  # raises: names no cell variable
    weights = tf1_names.from_named_arrays(
        arrays,
        nonlinearity=nonlinearity or "tanh",
        prefix=prefix,
        where=str(ckpt),
        forget_bias=forget_bias,
    )
    return with_nonlinearity(weights, nonlinearity, False, path)


def write(weights: RNNWeights, path: Path, *, forget_bias: float = 1.0) -> list[str]:
    arrays = tf1_names.to_named_arrays(weights, forget_bias)  # refuses a reset-after GRU
    target = checkpoint_prefix(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise WeightFileError(f"folder {parent} does not exist", "create it first")
    with tempfile.TemporaryDirectory(prefix=".rnnbench-", dir=parent) as tmp:
        tmp_prefix = Path(tmp) / "ckpt"
        _worker().call(
            "rnnbench.formats.tf1_checkpoint:worker_write",
            arrays=arrays,
            path=str(tmp_prefix),
            spec=weights.spec.to_dict(),
            dtype=str(weights.dtype),
            forget_bias=float(forget_bias),
            timeout=300,
        )
        for suffix in (DATA_SUFFIX, ".index"):  # the index last: it makes the checkpoint
            os.replace(str(tmp_prefix) + suffix, str(target) + suffix)
    return [
        f"files {target.name}.index and {target.name}{DATA_SUFFIX}; restore with Saver",
        *tf1_names.lstm_note(weights.spec, forget_bias),
    ]


# --- run in the TF1 worker --------------------------------------------------------------------
def _tf1() -> Any:
    import tensorflow as tf

    if tf.executing_eagerly():
        tf.compat.v1.disable_v2_behavior()  # TF1 graph mode; this process is TF1's own
    return tf


def worker_read(arrays: dict[str, np.ndarray], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    tf = _tf1()
    try:
        reader = tf.train.load_checkpoint(path)
    except Exception as exc:
        raise WeightFileError(f"{path} is not a readable TF checkpoint ({exc})") from exc
    names = sorted(reader.get_variable_to_shape_map())
    wanted = tf1_names.cell_variables(names)
    return {"names": names}, {n: np.asarray(reader.get_tensor(n)) for n in wanted}


def build_graph(spec: RNNSpec, dtype: Any, forget_bias: float = 1.0) -> tuple[Any, Any, Any]:
    """(graph, x placeholder, y) of the structure ``tf1_names.names_for(spec)`` names."""
    tf = _tf1()
    v1 = tf.compat.v1
    act = {"tanh": tf.tanh, "relu": tf.nn.relu}[spec.nonlinearity]
    graph = tf.Graph()
    with graph.as_default():

        def cell() -> Any:
            cells = v1.nn.rnn_cell
            if spec.cell == "lstm":
                return cells.LSTMCell(spec.hidden_size, forget_bias=forget_bias, dtype=dtype)
            if spec.cell == "gru":
                return cells.GRUCell(spec.hidden_size, dtype=dtype)
            return cells.BasicRNNCell(spec.hidden_size, activation=act, dtype=dtype)

        x = v1.placeholder(dtype, [None, None, spec.input_size], name="x")
        if not spec.bidirectional:
            cells = [cell() for _ in range(spec.num_layers)]
            stack = cells[0] if spec.num_layers == 1 else v1.nn.rnn_cell.MultiRNNCell(cells)
            y, _ = v1.nn.dynamic_rnn(stack, x, dtype=dtype)
        elif spec.num_layers == 1:
            (fw, bw), _ = v1.nn.bidirectional_dynamic_rnn(cell(), cell(), x, dtype=dtype)
            y = tf.concat([fw, bw], axis=-1)
        else:
            y = x
            with v1.variable_scope("stack_bidirectional_rnn"):
                for k in range(spec.num_layers):
                    with v1.variable_scope(f"cell_{k}"):
                        (fw, bw), _ = v1.nn.bidirectional_dynamic_rnn(
                            cell(), cell(), y, dtype=dtype
                        )
                        y = tf.concat([fw, bw], axis=-1)
    return graph, x, y


_WRITERS: dict[tuple[str, str, float], tuple[Any, dict[str, Any], dict[str, Any], Any, Any]] = {}


def _writer(
    spec: RNNSpec, dtype: str, forget_bias: float
) -> tuple[Any, dict[str, Any], dict[str, Any], Any, Any]:
    """(graph, placeholders, assign ops, saver, session) per spec and dtype, built once per
    worker: building a TF1 graph costs far more than assigning and saving."""
    key = (spec.to_json(), dtype, forget_bias)
    if key not in _WRITERS:
        tf = _tf1()
        graph, _, _ = build_graph(spec, tf.as_dtype(dtype), forget_bias)
        with graph.as_default():
            variables = {v.name.split(":")[0]: v for v in tf.compat.v1.global_variables()}
            feeds = {
                n: tf.compat.v1.placeholder(v.dtype.base_dtype, v.shape)
                for n, v in variables.items()
            }
            assigns = {n: v.assign(feeds[n]) for n, v in variables.items()}
            saver = tf.compat.v1.train.Saver(variables)
        _WRITERS[key] = (graph, feeds, assigns, saver, tf.compat.v1.Session(graph=graph))
    return _WRITERS[key]


def worker_write(
    arrays: dict[str, np.ndarray],
    path: str,
    spec: dict[str, Any],
    dtype: str,
    forget_bias: float = 1.0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    _, feeds, assigns, saver, sess = _writer(RNNSpec.from_dict(spec), dtype, forget_bias)
    if set(feeds) != set(arrays):
        raise WeightFileError(
            f"TF1 made variables {sorted(feeds)}, rnnbench expected {sorted(arrays)}",
            "a TensorFlow change of scope names: report it",
        )
    sess.run(list(assigns.values()), {feeds[n]: arrays[n] for n in feeds})
    saver.save(sess, path, write_meta_graph=False, write_state=False)
    return {}, {}
