"""A Keras 3 ``.weights.h5`` file (``model.save_weights``) of a model of SimpleRNN layers (or
``Bidirectional(SimpleRNN)`` layers), read and written with h5py.

Why h5py and not Keras: a weights file is a plain HDF5 tree, and reading it through Keras would
need the model rebuilt first and TensorFlow imported (seconds) in a process of its own
(``KERAS_BACKEND`` is process-wide). The tree Keras 3 writes for
``Sequential([Input((None, I)), SimpleRNN(H, ...), ...])`` is::

    layers/simple_rnn/cell/vars/{0: kernel (I, H), 1: recurrent_kernel (H, H), 2: bias (H,)}
    layers/simple_rnn_1/cell/vars/...                       (the second SimpleRNN, and so on)
    layers/bidirectional/{forward_layer,backward_layer}/cell/vars/{0,1,2}   (Bidirectional)

Group names are the layer class in snake case, numbered per class in model order (not the
layers' own names). The test suite loads every file written here with Keras' ``load_weights``
and checks the output, so a Keras change to this tree fails the tests. The file does not record
the activation (``--nonlinearity``) and holds one bias per direction.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from rnnbench.errors import LayoutError, WeightFileError
from rnnbench.formats._common import atomic_path, import_library, require_file, with_nonlinearity
from rnnbench.weights import RNNWeights

CARRIES_NONLINEARITY = False
TWO_BIASES = False
_NAME = re.compile(r"^(?P<base>[a-z0-9_]+?)(?:_(?P<n>\d+))?$")


def _order(name: str) -> tuple[str, int]:
    m = _NAME.match(name)
    if not m:
        return (name, 0)
    return (m["base"], int(m["n"]) + 1 if m["n"] else 0)


def _cell_vars(group: Any, where: str) -> list[np.ndarray]:
    if "cell" not in group or "vars" not in group["cell"]:
        raise LayoutError(f"{where} has no cell/vars group", "is it a SimpleRNN layer?")
    vars_ = group["cell"]["vars"]
    arrays = [np.asarray(vars_[str(i)]) for i in range(len(vars_))]
    if len(arrays) not in (2, 3) or arrays[1].ndim != 2:
        raise LayoutError(
            f"{where} holds {len(arrays)} arrays, not kernel, recurrent_kernel[, bias]",
            "rnnbench reads SimpleRNN layers",
        )
    rows, cols = arrays[1].shape
    if rows and cols != rows:
        kind = {3: "GRU", 4: "LSTM"}.get(cols // rows, "gated cell")
        raise LayoutError(
            f"{where}: recurrent kernel of shape {arrays[1].shape} belongs to a {kind}",
            "rnnbench converts SimpleRNN layers; LSTM and GRU are planned",
        )
    return arrays


def read(path: Path, *, nonlinearity: str | None = None, prefix: str | None = None) -> RNNWeights:
    h5py = import_library("h5py", "keras")
    require_file(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightFileError(
            f"{path} is not an HDF5 file ({exc})", "pass the file model.save_weights() wrote"
        ) from exc
    with handle as f:
        if "layers" not in f:
            raise WeightFileError(
                f"{path} has no 'layers' group: not a Keras 3 .weights.h5 of a model",
                "write it with model.save_weights('name.weights.h5') (Keras 3)",
            )
        groups = f["layers"]
        names = sorted((n for n in groups if prefix is None or n.startswith(prefix)), key=_order)
        lists: list[list[np.ndarray]] = []
        kinds = set()
        for name in names:
            group = groups[name]
            if "forward_layer" in group:
                fwd = _cell_vars(group["forward_layer"], f"{path}: layers/{name}/forward_layer")
                bwd = _cell_vars(group["backward_layer"], f"{path}: layers/{name}/backward_layer")
                lists.append(fwd + bwd)
                kinds.add("Bidirectional")
            elif _order(name)[0] == "simple_rnn":
                lists.append(_cell_vars(group, f"{path}: layers/{name}"))
                kinds.add("SimpleRNN")
            else:
                if "cell" in group:  # a recurrent layer of another kind: name it (LSTM, GRU)
                    _cell_vars(group, f"{path}: layers/{name}")
                held: list[str] = []
                group.visit(
                    lambda n, g=group, out=held: out.append(n) if hasattr(g[n], "shape") else None
                )
                if held:  # a layer with weights that is not a SimpleRNN
                    raise LayoutError(
                        f"{path} holds layer {name!r} with weights, which is not a SimpleRNN",
                        "rnnbench converts models of SimpleRNN layers only; for one layer of "
                        "a larger model use RNNWeights.from_keras(layer)",
                    )
        if not lists:
            raise LayoutError(
                f"{path} holds no SimpleRNN layer (groups: {', '.join(names) or 'none'})",
                "pass the weights file of a model holding SimpleRNN layers",
            )
        if len(kinds) > 1:
            raise LayoutError(
                f"{path} mixes SimpleRNN and Bidirectional layers",
                "rnnbench's spec has one direction setting for all stacked layers",
            )
    bidirectional = kinds == {"Bidirectional"}
    structure: Any = lists[0] if len(lists) == 1 else lists
    try:
        weights = RNNWeights.from_keras(
            structure, nonlinearity=nonlinearity or "tanh", bidirectional=bidirectional
        )
    except LayoutError as exc:
        raise LayoutError(f"{path}: {str(exc).splitlines()[0]}", exc.hint) from exc
    return with_nonlinearity(weights, nonlinearity, False, path)


def write(weights: RNNWeights, path: Path) -> list[str]:
    h5py = import_library("h5py", "keras")
    spec = weights.spec
    native = weights.to_keras()
    lists = [native] if spec.num_layers == 1 else native
    per_dir = 3 if spec.bias else 2

    def cell(group: Any, arrays: list[np.ndarray], layer_name: str) -> None:
        vars_ = group.create_group("cell").create_group("vars")
        vars_.attrs["name"] = "simple_rnn_cell"
        for i, arr in enumerate(arrays):
            vars_.create_dataset(str(i), data=arr)
        group.create_group("vars").attrs["name"] = layer_name

    with atomic_path(path, ".weights.h5") as tmp, h5py.File(tmp, "w") as f:
        layers = f.create_group("layers")
        for k, arrays in enumerate(lists):
            suffix = f"_{k}" if k else ""
            if spec.bidirectional:
                group = layers.create_group(f"bidirectional{suffix}")
                cell(group.create_group("forward_layer"), arrays[:per_dir], "forward_simple_rnn")
                cell(group.create_group("backward_layer"), arrays[per_dir:], "backward_simple_rnn")
                group.create_group("vars").attrs["name"] = f"bidirectional{suffix}"
            else:
                cell(layers.create_group(f"simple_rnn{suffix}"), arrays, f"simple_rnn{suffix}")
        f.create_group("vars").attrs["name"] = "sequential"
    return [
        "load it into keras.Sequential([keras.Input((None, "
        f"{spec.input_size})), "
        + ("Bidirectional(SimpleRNN(" if spec.bidirectional else "SimpleRNN(")
        + f"{spec.hidden_size}, activation='{spec.nonlinearity}', return_sequences=True)"
        + (")" if spec.bidirectional else "")
        + f" x {spec.num_layers}]) with model.load_weights"
    ]
