"""Files rnnbench writes and reads on the command line's behalf.

Writes are atomic: the data goes to a temporary file in the target's own folder, is flushed to
disk (fsync) and renamed onto the target (``os.replace``), so a reader never sees half a file
and a failure leaves the old file as it was. The file gets the mode a plain ``open(path, "w")``
would give it (``0o666`` less the umask), not the private ``0o600`` of ``tempfile.mkstemp``:
results and weights are meant to be shared.

The checks run before a command starts its work: an output path must be writable (its folder
exists or can be made, it is not a folder itself, it is not read-only), must not be one of the
command's inputs, and an existing file there must be of the kind the command writes (a results
file full of samples is never overwritten by a comparison); an input path must be a readable,
non-empty file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import Any

from rnnbench.errors import RNNBenchError

StrPath = str | PathLike[str]


class PathError(RNNBenchError, OSError):
    """A path given to rnnbench cannot be read or written as asked (a folder where a file is
    expected, a read-only place, a file of another kind, an input given as the output)."""


# --- modes ---------------------------------------------------------------------------------
def current_umask() -> int:
    """The process umask, read from /proc where it can be (setting it to read it back, the only
    portable way, is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0o666 less the umask."""
    return 0o666 & ~current_umask()


# --- atomic writes -------------------------------------------------------------------------
def _folder(target: Path) -> Path:
    return target.parent if str(target.parent) else Path(".")


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every system opens folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: StrPath, suffix: str = "", make_folder: bool = False) -> Iterator[Path]:
    """A temporary path next to ``target`` for a library to write to (``torch.save``, h5py,
    ``onnx.save``); when the block succeeds it is fsynced, given the umask's mode and renamed
    onto ``target``; when it fails it is removed. ``make_folder`` creates a missing folder
    first (as the command line does for its outputs); without it a missing folder is an
    error."""
    path = Path(target)
    folder = _folder(path)
    if make_folder:
        folder.mkdir(parents=True, exist_ok=True)
    if not folder.is_dir():
        raise FileNotFoundError(errno.ENOENT, "the folder does not exist", str(folder))
    # The suffix stays last: some libraries look at it when they write.
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=folder)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
        _fsync_folder(folder)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: StrPath, data: bytes, make_folder: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring and :func:`atomic_path`)."""
    with atomic_path(path, make_folder=make_folder) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_text(
    path: StrPath, text: str, encoding: str = "utf-8", make_folder: bool = False
) -> None:
    """Write ``text`` to ``path`` atomically (see the module docstring and :func:`atomic_path`)."""
    atomic_write_bytes(path, text.encode(encoding), make_folder=make_folder)


# --- checks before a command starts -----------------------------------------------------------
def _nearest_existing(path: Path) -> Path:
    current = path
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _probe_folder(folder: Path, target: Path) -> None:
    """Create and remove a file in ``folder``: the one test that tells a read-only filesystem,
    a folder without write permission and a pseudo-filesystem (/proc, /sys) apart from a
    writable folder, for root as for anyone."""
    try:
        fd, name = tempfile.mkstemp(prefix=".rnnbench-probe-", dir=folder)
    except OSError as exc:
        reason = {
            errno.EROFS: "the filesystem is read-only",
            errno.EACCES: "no permission to create files in its folder",
            errno.EPERM: "no permission to create files in its folder",
            errno.ENOENT: "files cannot be created in its folder",
            errno.ENOSPC: "the disk is full",
        }.get(exc.errno or 0, f"files cannot be created in its folder ({exc.strerror})")
        raise PathError(
            f"{target}: cannot be written: {reason} ({folder})",
            "write to a folder you own on a writable disk (e.g. under your home folder or /tmp)",
        ) from exc
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def schema_of(path: Path) -> str | None:
    """The ``schema`` field of a JSON file, or None when it is not a JSON object with one."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    schema = data.get("schema") if isinstance(data, dict) else None
    return schema if isinstance(schema, str) else None


def check_output_file(
    path: StrPath,
    *,
    flag: str,
    kinds: Iterable[str] = (),
    inputs: Iterable[StrPath] = (),
    what: str = "file",
) -> Path:
    """Refuse, before any work, an output file that cannot be written or must not be.

    ``flag`` names the option in messages (``--json``). ``kinds`` are the schema prefixes
    (``"rnnbench.check/"``) an existing JSON file there may have to be replaced; with no kinds,
    any existing file is replaced. An empty existing file is always replaceable. ``inputs`` are
    the command's input files, which the output must not be."""
    target = Path(path)
    if str(path) == "":
        raise PathError(f"{flag} is empty", f"give {flag} a file name")
    if target.is_dir():
        raise PathError(
            f"{target}: is a folder, but {flag} takes a file name",
            f"give a file inside it, e.g. {target / ('out' + (target.suffix or '.json'))}",
        )
    for source in inputs:
        if _same_file(target, Path(source)):
            raise PathError(
                f"{target}: is one of this command's inputs; {flag} would overwrite it",
                f"give {flag} another file name",
            )
    folder = _nearest_existing(_folder(target))
    if not folder.is_dir():
        raise PathError(
            f"{target}: cannot be written: {folder} is a file, not a folder",
            "give a path whose folders are folders",
        )
    if target.exists():
        if not target.is_file():
            raise PathError(f"{target}: exists and is not a regular file", "give another name")
        if not os.access(target, os.W_OK):
            raise PathError(
                f"{target}: the file is read-only",
                "give another file name, or make it writable (chmod u+w) if it may be replaced",
            )
        kinds = tuple(kinds)
        if kinds and target.stat().st_size > 0:
            found = schema_of(target)
            if found is None or not found.startswith(kinds):
                held = f"a {found} file" if found else "not an rnnbench file of that kind"
                raise PathError(
                    f"{target}: exists and is {held}; {flag} writes "
                    f"{' or '.join(k + '*' for k in kinds)} {what}s and will not overwrite it",
                    f"give {flag} a new file name, or move the existing file away",
                )
    _probe_folder(folder, target)
    return target


def check_output_folder(path: StrPath, *, flag: str, inputs: Iterable[StrPath] = ()) -> Path:
    """Refuse, before any work, an output folder that cannot be made or written."""
    target = Path(path)
    if str(path) == "":
        raise PathError(f"{flag} is empty", f"give {flag} a folder name")
    if target.exists() and not target.is_dir():
        if any(_same_file(target, Path(source)) for source in inputs):
            raise PathError(
                f"{target}: is one of this command's inputs, but {flag} takes the output folder",
                f"give {flag} a folder, e.g. {flag} report",
            )
        raise PathError(
            f"{target}: is a file, but {flag} takes a folder",
            f"give {flag} a folder name (made when missing), e.g. {flag} report",
        )
    folder = _nearest_existing(target)
    if not folder.is_dir():
        raise PathError(
            f"{target}: cannot be made: {folder} is a file, not a folder",
            "give a path whose folders are folders",
        )
    _probe_folder(folder, target)
    return target


def check_input_file(path: StrPath, *, what: str = "file") -> Path:
    """A readable, non-empty file, or a clear error for a missing one, a folder or an empty one."""
    source = Path(path)
    if str(path) == "":
        raise PathError(f"an empty {what} path was given", f"give the path of the {what}")
    if source.is_dir():
        raise PathError(
            f"{source}: is a folder, not a {what}",
            f"give the {what} itself (a file inside the folder)",
        )
    if not source.exists():
        raise PathError(f"{source}: no such file", "check the path (and the working directory)")
    if not source.is_file():
        raise PathError(f"{source}: is not a regular file", f"give a {what}")
    if not os.access(source, os.R_OK):
        raise PathError(f"{source}: no permission to read it", "check the file's permissions")
    if source.stat().st_size == 0:
        raise PathError(
            f"{source}: the file is empty, not a {what}",
            "a run cut short may have left it empty; give the complete file",
        )
    return source


def read_json_file(path: StrPath, *, what: str = "JSON file") -> Any:
    """The parsed JSON of an input file, with a clear error for a missing, empty, unreadable
    or non-JSON one."""
    source = check_input_file(path, what=what)
    try:
        return json.loads(source.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PathError(
            f"{source}: is not a JSON file ({exc})",
            f"give a {what}; a copy cut short may have left it truncated",
        ) from None
