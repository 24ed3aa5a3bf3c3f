"""A Keras 3 ``.weights.h5`` file (``model.save_weights``) of a model of ``SimpleRNN``, ``LSTM``
or ``GRU`` layers (or ``Bidirectional`` wrappers of them), read and written with h5py.

Why h5py and not Keras: a weights file is a plain HDF5 tree, and reading it through Keras would
need the model rebuilt first and TensorFlow imported (seconds) in a process of its own
(``KERAS_BACKEND`` is process-wide). The tree Keras 3 writes for
``Sequential([Input((None, I)), LSTM(H, ...), ...])`` is::

    layers/lstm/cell/vars/{0: kernel (I, 4H), 1: recurrent_kernel (H, 4H), 2: bias (4H,)}
    layers/lstm/cell/vars  attribute name = "lstm_cell"
    layers/lstm_1/cell/vars/...                             (the second LSTM, and so on)
    layers/bidirectional/{forward_layer,backward_layer}/cell/vars/{0,1,2}   (Bidirectional)

and the same with ``simple_rnn`` / ``simple_rnn_cell`` (kernel (I, H)) and ``gru`` /
``gru_cell`` (kernel (I, 3H); bias (2, 3H) = [input bias; recurrent bias] for
``reset_after=True``, Keras' default, or (3H,) for ``reset_after=False``). Group names are the
layer class in snake case, numbered per class in model order (not the layers' own names).

The cell is read from the group name (or, inside a Bidirectional wrapper, the cell group's
``name`` attribute) and checked against the recurrent kernel's shape (H, G * H); a GRU's formula
from its bias' shape. A GRU without bias shows neither: ``reset_after`` must then be given.
The file does not record the SimpleRNN's activation: a relu model's file reads as tanh unless
``nonlinearity="relu"`` (``--nonlinearity relu``) is given, and reading a SimpleRNN without it
warns so (a ``UserWarning``; ``rnnbench convert`` prints it as a note). It holds one bias per
direction (their sum), except a reset-after GRU's two. The test suite loads every file written
here with Keras' ``load_weights`` and checks the output, so a Keras change to this tree fails
the tests.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from rnnbench.errors import LayoutError, ShapeError, SpecError, WeightFileError
from rnnbench.formats._common import atomic_path, import_library, require_file, with_nonlinearity
from rnnbench.spec import CELLS, RNNSpec
from rnnbench.weights import RNNWeights

CARRIES_NONLINEARITY = False
_NAME = re.compile(r"^(?P<base>[a-z0-9_]+?)(?:_(?P<n>\d+))?$")
# cell -> the snake-case layer class Keras names the layer's group after
LAYER_GROUP = {"rnn": "simple_rnn", "lstm": "lstm", "gru": "gru"}
_GROUP_CELL = {v: k for k, v in LAYER_GROUP.items()}
_CELL_NAME = {f"{v}_cell": k for k, v in LAYER_GROUP.items()}
_LAYER_CLASS = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}
_GATES_CELL = {g: c for c, g in CELLS.items()}


def two_biases(spec: RNNSpec) -> bool:
    """Keras holds both biases of a reset-after GRU; every other layer holds their sum."""
    return spec.cell == "gru" and bool(spec.reset_after)


def _order(name: str) -> tuple[str, int]:
    m = _NAME.match(name)
    if not m:
        return (name, 0)
    return (m["base"], int(m["n"]) + 1 if m["n"] else 0)


def _cell_vars(group: Any, where: str, named: str | None) -> tuple[str, list[np.ndarray]]:
    """(cell, arrays) of one recurrent layer's group; ``named`` is the cell its group name says
    (None when it says nothing)."""
    if "cell" not in group or "vars" not in group["cell"]:
        raise LayoutError(
            f"{where} has no cell/vars group", "is it a SimpleRNN, LSTM or GRU layer?"
        )
    vars_ = group["cell"]["vars"]
    arrays = [np.asarray(vars_[str(i)]) for i in range(len(vars_))]
    if len(arrays) not in (2, 3) or arrays[1].ndim != 2:
        raise LayoutError(
            f"{where} holds {len(arrays)} arrays, not kernel, recurrent_kernel[, bias]",
            "rnnbench reads SimpleRNN, LSTM and GRU layers",
        )
    attr = vars_.attrs.get("name")
    attr = attr.decode() if isinstance(attr, bytes) else attr
    if named is None and isinstance(attr, str):
        named = _CELL_NAME.get(attr)
    rows, cols = arrays[1].shape
    gates = cols // rows if rows and cols % rows == 0 else 0
    by_shape = _GATES_CELL.get(gates)
    if by_shape is None:
        raise ShapeError(
            f"{where}: recurrent kernel of shape {arrays[1].shape} is not (H, G * H) with G = 1 "
            "(SimpleRNN), 4 (LSTM) or 3 (GRU)",
            "pass the weights file of a model of SimpleRNN, LSTM or GRU layers",
        )
    if named is not None and named != by_shape:
        raise LayoutError(
            f"{where} is named a {_LAYER_CLASS[named]}, but its recurrent kernel "
            f"{arrays[1].shape} is a {_LAYER_CLASS[by_shape]}'s",
            "the file is damaged or was not written by Keras' save_weights",
        )
    return by_shape, arrays


def _reset_after(cell: str, arrays: list[np.ndarray], given: bool | None, where: str) -> Any:
    """A GRU's formula, from its bias' shape; ``given`` only where the layer has no bias (a
    contradicting ``given`` is refused by the caller, rnnbench.formats.read)."""
    if cell != "gru":
        return None
    if len(arrays) == 3:
        return arrays[2].ndim == 2  # (2, 3H): input and recurrent bias apart
    if given is None:
        raise LayoutError(
            f"{where} is a GRU without bias, whose weights do not say its formula "
            "(reset_after=True, Keras' default, or False)",
            "say it: --reset-after or --reset-before (reset_after= in Python)",
        )
    return given


def read(
    path: Path,
    *,
    nonlinearity: str | None = None,
    prefix: str | None = None,
    forget_bias: float = 1.0,
    reset_after: bool | None = None,
) -> RNNWeights:
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
        kinds, cells, formulas = set(), set(), set()
        for name in names:
            group = groups[name]
            where = f"{path}: layers/{name}"
            if "forward_layer" in group:
                cell, fwd = _cell_vars(group["forward_layer"], f"{where}/forward_layer", None)
                back, bwd = _cell_vars(group["backward_layer"], f"{where}/backward_layer", None)
                if back != cell:
                    raise LayoutError(
                        f"{where} wraps a {_LAYER_CLASS[cell]} forward and a "
                        f"{_LAYER_CLASS[back]} backward",
                        "rnnbench's bidirectional layer runs one cell both ways",
                    )
                formulas.add(_reset_after(cell, fwd, reset_after, f"{where}/forward_layer"))
                formulas.add(_reset_after(cell, bwd, reset_after, f"{where}/backward_layer"))
                lists.append(fwd + bwd)
                kinds.add("Bidirectional")
            elif _order(name)[0] in _GROUP_CELL:
                cell, arrays = _cell_vars(group, where, _GROUP_CELL[_order(name)[0]])
                formulas.add(_reset_after(cell, arrays, reset_after, where))
                lists.append(arrays)
                kinds.add(_LAYER_CLASS[cell])
            else:
                held: list[str] = []
                group.visit(
                    lambda n, g=group, out=held: out.append(n) if hasattr(g[n], "shape") else None
                )
                if held:  # a layer with weights that is not a recurrent one
                    raise LayoutError(
                        f"{path} holds layer {name!r} with weights, which is not a SimpleRNN, "
                        "LSTM or GRU",
                        "rnnbench converts models of recurrent layers only; for one layer of "
                        "a larger model use RNNWeights.from_keras(layer)",
                    )
                continue
            cells.add(cell)
        if not lists:
            raise LayoutError(
                f"{path} holds no SimpleRNN, LSTM or GRU layer (groups: "
                f"{', '.join(names) or 'none'})",
                "pass the weights file of a model holding recurrent layers",
            )
        if len(kinds) > 1 or len(cells) > 1:
            raise LayoutError(
                f"{path} mixes layer kinds ({', '.join(sorted(kinds | cells))})",
                "rnnbench's spec has one cell and one direction setting for all stacked layers",
            )
        if len(formulas) > 1:
            raise LayoutError(
                f"{path} mixes GRU(reset_after=True) and GRU(reset_after=False) layers",
                "rnnbench's spec has one GRU formula for all stacked layers",
            )
    bidirectional = kinds == {"Bidirectional"}
    cell = cells.pop()
    structure: Any = lists[0] if len(lists) == 1 else lists
    kwargs: dict[str, Any] = {"bidirectional": bidirectional, "cell": cell}
    if cell == "rnn":
        kwargs["nonlinearity"] = nonlinearity or "tanh"
        if nonlinearity is None:
            warnings.warn(
                f"{path}: a Keras weights file does not record a SimpleRNN's activation: read "
                "as tanh (Keras' default); if the model used activation='relu', read it with "
                '--nonlinearity relu (nonlinearity="relu" in Python)',
                UserWarning,
                stacklevel=2,
            )
    if cell == "gru":
        kwargs["reset_after"] = formulas.pop()
    try:
        weights = RNNWeights.from_keras(structure, **kwargs)
    except (LayoutError, ShapeError, SpecError) as exc:
        raise type(exc)(f"{path}: {str(exc).splitlines()[0]}", exc.hint) from exc
    return with_nonlinearity(weights, nonlinearity, False, path)


def keras_layer_code(spec: RNNSpec) -> str:
    """The Keras layer whose weights one layer of the file holds."""
    args = [str(spec.hidden_size)]
    if spec.cell == "rnn":
        args.append(f"activation='{spec.nonlinearity}'")
    if spec.cell == "gru" and not spec.reset_after:
        args.append("reset_after=False")
    if not spec.bias:
        args.append("use_bias=False")
    args.append("return_sequences=True")
    layer = f"{_LAYER_CLASS[spec.cell]}({', '.join(args)})"
    return f"Bidirectional({layer})" if spec.bidirectional else layer


def write(weights: RNNWeights, path: Path, *, forget_bias: float = 1.0) -> list[str]:
    h5py = import_library("h5py", "keras")
    spec = weights.spec
    native = weights.to_keras()
    lists = [native] if spec.num_layers == 1 else native
    per_dir = 3 if spec.bias else 2
    base = LAYER_GROUP[spec.cell]

    def cell(group: Any, arrays: list[np.ndarray], layer_name: str) -> None:
        vars_ = group.create_group("cell").create_group("vars")
        vars_.attrs["name"] = f"{base}_cell"
        for i, arr in enumerate(arrays):
            vars_.create_dataset(str(i), data=np.asarray(arr))
        group.create_group("vars").attrs["name"] = layer_name

    with atomic_path(path, ".weights.h5") as tmp, h5py.File(tmp, "w") as f:
        layers = f.create_group("layers")
        for k, arrays in enumerate(lists):
            suffix = f"_{k}" if k else ""
            if spec.bidirectional:
                group = layers.create_group(f"bidirectional{suffix}")
                cell(group.create_group("forward_layer"), arrays[:per_dir], f"forward_{base}")
                cell(group.create_group("backward_layer"), arrays[per_dir:], f"backward_{base}")
                group.create_group("vars").attrs["name"] = f"bidirectional{suffix}"
            else:
                cell(layers.create_group(f"{base}{suffix}"), arrays, f"{base}{suffix}")
        f.create_group("vars").attrs["name"] = "sequential"
    return [
        f"load it into keras.Sequential([keras.Input((None, {spec.input_size})), "
        f"{keras_layer_code(spec)} x {spec.num_layers}]) with model.load_weights"
    ]
