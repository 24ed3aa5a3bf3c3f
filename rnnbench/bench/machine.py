"""The machine record written into every results file, and the runtime facts (threads, TF32)
that only a backend's own worker process can tell.

Nothing here imports a framework: ``machine_record`` reads /proc, nvidia-smi and package
metadata; ``runtime_info`` (called inside a worker) asks only the libraries that worker has
already imported.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

# Every library whose version a results file records (None when not installed).
DISTRIBUTIONS = (
    "numpy",
    "torch",
    "jax",
    "jaxlib",
    "keras",
    "tensorflow",
    "tf-keras",
    "threadpoolctl",
    "rich",
    "pytest-benchmark",
)
# Environment variables that change thread counts or numerics; recorded when set.
ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "XLA_FLAGS",
    "NVIDIA_TF32_OVERRIDE",
    "TF_ENABLE_ONEDNN_OPTS",
    "CUDA_VISIBLE_DEVICES",
    "JAX_DEFAULT_MATMUL_PRECISION",
)


def _cpuinfo() -> dict[str, Any]:
    model = platform.processor() or None
    physical: set[tuple[str, str]] = set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    phys_id = core_id = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and (model is None or model in ("x86_64", "aarch64", "")):
            model = value
        elif key == "physical id":
            phys_id = value
        elif key == "core id":
            core_id = value
            physical.add((phys_id, core_id))
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "model": model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,  # what this process may run on (affinity, containers)
        "physical_cores": len(physical) or None,
        "memory_gib": _memory_gib(),
    }


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 2)
    except (OSError, ValueError, IndexError):
        pass
    return None


def gpu_info() -> list[dict[str, Any]]:
    """NVIDIA GPUs from nvidia-smi (name, memory, driver); an empty list without one."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [
                exe,
                "--query-gpu=index,name,memory.total,driver_version,compute_cap",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 4:
            gpus.append(
                {
                    "index": parts[0],
                    "name": parts[1],
                    "memory_mib": parts[2],
                    "driver": parts[3],
                    "compute_capability": parts[4] if len(parts) > 4 else None,
                }
            )
    return gpus


def cuda_unavailable_reason() -> str | None:
    """Why CUDA cannot run here (checked without importing a framework), or None."""
    if Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi"):
        return None
    return (
        "CUDA is unavailable on this machine: no NVIDIA driver (no nvidia-smi, no "
        "/proc/driver/nvidia)"
    )


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in DISTRIBUTIONS:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def git_commit() -> dict[str, Any]:
    """The commit of the checkout rnnbench runs from, and whether it has local changes."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists() or shutil.which("git") is None:
        return {"commit": None, "dirty": None}
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty)}


def blas_info() -> list[dict[str, Any]] | str:
    """threadpoolctl's view of the BLAS/OpenMP pools loaded in this process."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed (pip install 'rnnbench[bench]')"
    keep = (
        "user_api",
        "internal_api",
        "prefix",
        "version",
        "num_threads",
        "threading_layer",
        "architecture",
        "filepath",
    )
    return [{k: pool.get(k) for k in keep if k in pool} for pool in threadpool_info()]


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) clock ticks of every CPU since boot, from /proc/stat; None elsewhere."""
    text = _read("/proc/stat")
    if not text or not text.startswith("cpu "):
        return None
    values = [int(v) for v in text.split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def _own_jiffies() -> int | None:
    """Clock ticks this process (and its waited-for children) used, from /proc/self/stat."""
    text = _read("/proc/self/stat")
    if not text:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime


def other_load(window_s: float = 0.25) -> dict[str, Any]:
    """How busy the machine is with work that is not this benchmark, now: the cores other
    processes kept busy during ``window_s`` seconds (``busy_cores``: 0.0 idle, 1.0 one core's
    worth), and the load average beside it. The load average alone cannot say: it is a mean
    over minutes that counts the benchmark's own workers, and a run started right after
    another inherits the first's. None where /proc is not readable (macOS, Windows)."""
    try:
        load: list[float] | None = [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        load = None
    first, own = _cpu_jiffies(), _own_jiffies()
    busy = None
    if first is not None and own is not None and window_s > 0:
        import time

        time.sleep(window_s)
        second, own2 = _cpu_jiffies(), _own_jiffies()
        if second is not None and own2 is not None and second[1] > first[1]:
            cpus = os.cpu_count() or 1
            # ticks of all CPUs together: the fraction busy times the CPU count is cores
            share = ((second[0] - first[0]) - (own2 - own)) / (second[1] - first[1])
            busy = round(max(share, 0.0) * cpus, 3)
    return {"load_average": load, "busy_cores": busy, "window_s": window_s}


def system_state() -> dict[str, Any]:
    """The facts that explain noise, read now (they change from minute to minute): the load
    average (the 1, 5 and 15 minute means of runnable processes: above the core count, others
    compete with the benchmark), the CPU frequency governor of each policy ("performance"
    holds the clock; "powersave"/"ondemand"/"schedutil" move it with load, so a run's first
    calls and its idle gaps run at another speed), the current and allowed frequencies, and
    whether turbo is on (turbo frequencies depend on temperature and on how many cores are
    busy). A fact this system does not expose (a container, macOS) is None, not a guess."""
    try:
        load: list[float] | None = [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        load = None
    governors: dict[str, int] = {}
    cur_mhz: list[float] = []
    limits: set[tuple[int, int]] = set()
    for policy in sorted(Path("/sys/devices/system/cpu/cpufreq").glob("policy*")):
        gov = _read(str(policy / "scaling_governor"))
        if gov:
            governors[gov] = governors.get(gov, 0) + 1
        cur = _read(str(policy / "scaling_cur_freq"))
        if cur and cur.isdigit():
            cur_mhz.append(int(cur) / 1000)
        lo, hi = _read(str(policy / "scaling_min_freq")), _read(str(policy / "scaling_max_freq"))
        if lo and hi and lo.isdigit() and hi.isdigit():
            limits.add((int(lo) // 1000, int(hi) // 1000))
    no_turbo = _read("/sys/devices/system/cpu/intel_pstate/no_turbo")
    boost = _read("/sys/devices/system/cpu/cpufreq/boost")
    turbo = (
        no_turbo == "0" if no_turbo in ("0", "1") else boost == "1" if boost in ("0", "1") else None
    )
    return {
        "load_average": load,
        "cpu_count": os.cpu_count(),
        "governor": governors or None,
        "cpu_mhz": (
            {"min": min(cur_mhz), "max": max(cur_mhz), "cpus": len(cur_mhz)} if cur_mhz else None
        ),
        "scaling_mhz": sorted(limits) or None,
        "turbo": turbo,
    }


def machine_record() -> dict[str, Any]:
    """Everything about this machine and software a reader needs to judge a number."""
    import numpy as np  # noqa: F401 - loaded so that threadpoolctl sees NumPy's BLAS

    from rnnbench import __version__

    return {
        "hostname": socket.gethostname(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu": _cpuinfo(),
        "gpus": gpu_info(),
        "blas": blas_info(),
        "versions": versions(),
        "rnnbench": {"version": __version__, **git_commit()},
        "env": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
        # load, governor, clocks: not part of machine_id (they change between runs), kept
        # with the machine so that a reader sees what the machine was doing
        "system": system_state(),
        # Filled in as cases run: what each backend's worker reported (threads, TF32).
        "threads": {},
        "tf32": {},
    }


def machine_id(record: dict[str, Any]) -> str:
    """A short stable id of the hardware and software (not the time) of a record."""
    stable = {k: record.get(k) for k in ("hostname", "platform", "cpu", "gpus", "versions")}
    stable["cpu"] = {k: v for k, v in (record.get("cpu") or {}).items() if k != "memory_gib"}
    digest = hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()
    return digest[:12]


# --- inside a worker process -------------------------------------------------------------
def runtime_info() -> dict[str, Any]:
    """Thread counts and TF32 settings of the libraries this (worker) process has imported."""
    threads: dict[str, Any] = {"cpu_count": os.cpu_count()}
    tf32: dict[str, Any] = {}
    mods = sys.modules
    if "torch" in mods:
        torch = mods["torch"]
        threads["torch_intra_op"] = torch.get_num_threads()
        threads["torch_inter_op"] = torch.get_num_interop_threads()
        tf32["torch.backends.cuda.matmul.allow_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
        tf32["torch.backends.cudnn.allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)
        tf32["torch.get_float32_matmul_precision"] = torch.get_float32_matmul_precision()
    if "jax" in mods:
        jax = mods["jax"]
        tf32["jax_default_matmul_precision"] = str(jax.config.jax_default_matmul_precision)
        threads["xla_flags"] = os.environ.get("XLA_FLAGS")
    if "tensorflow" in mods:
        tf = mods["tensorflow"]
        try:
            threads["tf_intra_op"] = tf.config.threading.get_intra_op_parallelism_threads()
            threads["tf_inter_op"] = tf.config.threading.get_inter_op_parallelism_threads()
            tf32["tf.tensor_float_32_execution"] = bool(
                tf.config.experimental.tensor_float_32_execution_enabled()
            )
        except AttributeError:  # a TensorFlow without tf.config
            pass
    if "threadpoolctl" in mods or "numpy" in mods:
        blas = blas_info()
        threads["blas"] = (
            [
                {"internal_api": p.get("internal_api"), "num_threads": p.get("num_threads")}
                for p in blas
            ]
            if isinstance(blas, list)
            else blas
        )
    return {"threads": threads, "tf32": tf32}


def thread_env(threads: int | None) -> dict[str, str]:
    """Environment of a worker that should use ``threads`` threads (empty: library defaults).

    Set before any library starts, since most read their pool size once (OpenMP, MKL,
    OpenBLAS, TensorFlow). XLA's CPU client has no thread-count flag beyond switching Eigen's
    multi-threading off, which is what one thread means there.
    """
    if threads is None:
        return {}
    n = str(threads)
    env = {
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "TF_NUM_INTRAOP_THREADS": n,
        "TF_NUM_INTEROP_THREADS": "1",
    }
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = (
            f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        ).strip()
    return env


def device_env(device: str) -> dict[str, str]:
    """Environment of a worker on ``device``. On CUDA several workers share the GPU (a case's
    processes, and the other backends of its group, stay alive together while they take
    turns): JAX would reserve 75% of the GPU's memory and TensorFlow all of it at start, so
    the second worker would find none. Each allocates what it uses instead."""
    if device != "cuda":
        return {}
    return {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
