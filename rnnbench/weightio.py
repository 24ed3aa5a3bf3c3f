"""Weight files: ``.npz`` and ``.safetensors``, with the spec inside, never through pickle.

The safetensors format (an 8-byte little-endian header length, a JSON header, raw little-endian
data) is simple enough to read and write in NumPy alone, which keeps the core free of
dependencies; the test suite checks the files against the ``safetensors`` package both ways.
"""

from __future__ import annotations

import json
import struct
import zipfile
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rnnbench.errors import WeightFileError
from rnnbench.fileio import atomic_path
from rnnbench.spec import RNNSpec

if TYPE_CHECKING:
    from rnnbench.weights import RNNWeights

SPEC_KEY = "rnnbench_spec"
FORMAT_KEY = "rnnbench_format"
FORMAT_VERSION = "1"
SUFFIXES = (".npz", ".safetensors")
_ST_DTYPES: dict[str, np.dtype[Any]] = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
_MAX_HEADER = 100 * 1024 * 1024


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise WeightFileError(
            f"{path}: unknown weight file suffix {suffix or '(none)'!r}",
            f"use one of {', '.join(SUFFIXES)}",
        )
    return suffix


def save(weights: RNNWeights, path: str | PathLike[str]) -> None:
    """Write atomically (a temporary file renamed into place), so a failure leaves no half file;
    the file gets the umask's mode, as ``open(path, "w")`` would give it."""
    target = Path(path)
    suffix = _suffix(target)
    if target.is_dir():
        raise WeightFileError(
            f"{target} is a folder, not a weight file name", f"give a file name, e.g. w{suffix}"
        )
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise WeightFileError(f"folder {folder} does not exist", "create it first")
    arrays = weights.arrays()
    spec_json = weights.spec.to_json()
    with atomic_path(target, suffix) as tmp:
        if suffix == ".npz":
            meta = {SPEC_KEY: np.array(spec_json), FORMAT_KEY: np.array(FORMAT_VERSION)}
            with open(tmp, "wb") as fh:
                np.savez(fh, **meta, **arrays)  # type: ignore[arg-type]
        else:
            write_safetensors(tmp, arrays, {SPEC_KEY: spec_json, FORMAT_KEY: FORMAT_VERSION})


def load(path: str | PathLike[str]) -> tuple[RNNSpec, dict[str, np.ndarray]]:
    source = Path(path)
    suffix = _suffix(source)
    if source.is_dir():
        raise WeightFileError(
            f"{source} is a folder, not a weight file", "give the weight file itself"
        )
    if not source.is_file():
        raise WeightFileError(
            f"weight file {source} does not exist", "check the path (and the working directory)"
        )
    if suffix == ".npz":
        meta, arrays = _read_npz(source)
    else:
        arrays, meta = read_safetensors(source)
    if SPEC_KEY not in meta:
        raise WeightFileError(
            f"{source} holds no rnnbench spec ({SPEC_KEY!r})",
            "it was not written by RNNWeights.save; convert it with `rnnbench convert`",
        )
    try:
        spec = RNNSpec.from_dict(json.loads(meta[SPEC_KEY]))
    except (ValueError, TypeError) as exc:
        raise WeightFileError(f"{source}: the stored spec is unreadable: {exc}") from exc
    return spec, arrays


def _read_npz(source: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    try:
        data = np.load(source, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise WeightFileError(
                f"{source} is a single .npy array, not a .npz archive",
                "save the weights with RNNWeights.save",
            )
        with data:
            files = {name: data[name] for name in data.files}
    except WeightFileError:
        raise
    except ValueError as exc:  # NumPy refuses object arrays / pickles with allow_pickle=False
        raise WeightFileError(
            f"{source} needs pickle to read ({exc}); rnnbench never unpickles weight files",
            "re-save the weights with RNNWeights.save",
        ) from exc
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise WeightFileError(
            f"{source} is not a readable .npz archive (truncated or corrupt: {exc})",
            "re-save the weights; check the copy was complete",
        ) from exc
    meta = {k: str(files.pop(k)) for k in (SPEC_KEY, FORMAT_KEY) if k in files}
    return meta, files


def write_safetensors(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        code = {np.dtype("float32"): "F32", np.dtype("float64"): "F64"}[arr.dtype]
        blob = arr.astype(_ST_DTYPES[code], copy=False).tobytes()
        header[name] = {
            "dtype": code,
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        offset += len(blob)
        blobs.append(blob)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for blob in blobs:
            fh.write(blob)


def read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    data = path.read_bytes()
    corrupt = "re-save the weights; check the copy was complete"
    if len(data) < 8:
        raise WeightFileError(f"{path} is truncated ({len(data)} bytes)", corrupt)
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(_MAX_HEADER, len(data) - 8):
        raise WeightFileError(
            f"{path} is not a safetensors file, or is truncated (header of {size} bytes)", corrupt
        )
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightFileError(
            f"{path} has an unreadable safetensors header: {exc}", corrupt
        ) from exc
    body = memoryview(data)[8 + size :]
    metadata = {str(k): str(v) for k, v in (header.pop("__metadata__", None) or {}).items()}
    arrays = {}
    for name, info in header.items():
        code = info.get("dtype")
        if code not in _ST_DTYPES:
            raise WeightFileError(
                f"{path}: tensor {name!r} has dtype {code}", "rnnbench reads F32 and F64 tensors"
            )
        start, end = info["data_offsets"]
        shape = tuple(int(n) for n in info["shape"])
        dtype = _ST_DTYPES[code]
        if end > len(body) or end - start != int(np.prod(shape)) * dtype.itemsize:
            raise WeightFileError(f"{path}: tensor {name!r} is truncated or corrupt", corrupt)
        arr = np.frombuffer(body[start:end], dtype=dtype).reshape(shape)
        arrays[name] = arr.astype(dtype.newbyteorder("="))
    return arrays, metadata
