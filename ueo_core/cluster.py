"""The Ray cluster the jobs run on: the operator's (by address), or a local head this project starts and finds again.

``ray start --head`` runs Ray on one machine with no setup, and the same code joins a cluster by an address
(``UEO_RAY_ADDRESS`` or ``RAY_ADDRESS``). The jobs on it are ``ueo_core.jobs``'.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from .runs import write_json_atomic

PASSED_ENV = ("UEO_", "HF_", "OPENBLAS_", "OMP_", "TORCH_HOME", "XDG_CACHE_HOME")  # what a worker inherits


def worker_env() -> dict:
    """The environment of this project's Ray workers (jobs, the feature pass's actors): this tree on PYTHONPATH and
    the settings a worker inherits (``PASSED_ENV``)."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ENV)}
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                       if p])
    return env

NAMESPACE = "ueo_studio"
SLOT = "ueo_slot"                   # the custom resource a CPU run asks for (one each)
STATE_DIR = Path(os.environ.get("UEO_RAY_DIR", Path.home() / ".cache" / "ueo_studio" / "ray"))

# Ray starts its workers at nice 15 by default: on a shared CPU a run then yields to every page redraw of the web
# server (bench/classroom.py measured it). A local head of ours starts them at UEO_WORKER_NICENESS (default below).
WORKER_NICENESS = 0

class ClusterError(ValueError):
    """Ray could not be reached or started; the message says what to check (a ValueError: the pages show such
    errors as a message, never a traceback)."""


def configured_address() -> Optional[str]:
    """The operator's Ray cluster (``UEO_RAY_ADDRESS``, else Ray's own ``RAY_ADDRESS``), or None for a local one."""
    return os.environ.get("UEO_RAY_ADDRESS") or os.environ.get("RAY_ADDRESS") or None


def default_slots() -> int:
    """Runs that train at once on a CPU-only machine when the operator sets no ``UEO_SLOTS``: one per two cores, so
    that one core is left to the web server on a 2-core machine (bench/classroom.py measures the choice)."""
    return max(1, (os.cpu_count() or 2) // 2)


def slots_from_env() -> int:
    v = os.environ.get("UEO_SLOTS")
    return max(1, int(v)) if v and v.strip().isdigit() else default_slots()


def _ray_bin() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_local_head(state_dir: Path = STATE_DIR, slots: Optional[int] = None, port: Optional[int] = None,
                     temp_dir: Optional[str] = None) -> str:
    """Start a Ray head on this machine (its own daemon processes: they outlive the caller), bound to 127.0.0.1,
    with ``slots`` run slots; write its address to ``state_dir/address`` and return it."""
    slots = slots or slots_from_env()
    port = port or _free_port()
    cmd = [_ray_bin(), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
           f"--resources={json.dumps({SLOT: slots})}", "--include-dashboard=false", "--disable-usage-stats"]
    temp_dir = temp_dir or os.environ.get("UEO_RAY_TEMP_DIR")
    if temp_dir:
        cmd.append(f"--temp-dir={temp_dir}")
    env = dict(os.environ)
    env.setdefault("RAY_worker_niceness", os.environ.get("UEO_WORKER_NICENESS", str(WORKER_NICENESS)))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    if proc.returncode != 0:
        raise ClusterError("Could not start a local Ray: " + (proc.stderr or proc.stdout)[-600:])
    address = f"127.0.0.1:{port}"
    state_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(state_dir / "address.json", {"address": address, "slots": slots, "started": time.time()})
    return address


def stop_local_head(temp_dir: str) -> None:
    """End every process of the local Ray whose temp dir is ``temp_dir`` (not the other Ray clusters of this
    machine, as ``ray stop`` would): those naming it on their command line (gcs, raylet) or holding a file in it
    open (the agents and workers, which rename themselves). For tests and benchmarks that start their own."""
    import signal

    def ours(pid: str) -> bool:
        try:
            if temp_dir in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                return True
            return any(temp_dir in os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            return False
    for pid in [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid() and ours(p)]:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass


_lock = threading.Lock()


def _listening(address: str, timeout: float = 2.0) -> bool:
    """Whether something accepts connections at ``host:port``."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def connect(start_local: bool = True) -> str:
    """Connect this process to Ray (once): the operator's cluster when an address is set; else the local head this
    project started before (its address is kept in ``UEO_RAY_DIR``), starting one when there is none."""
    import ray
    with _lock:
        if ray.is_initialized():
            return ray.get_runtime_context().gcs_address
        address = configured_address()
        local, last = None, "no Ray is running"
        if address is None:
            try:
                local = json.loads((STATE_DIR / "address.json").read_text())["address"]
            except (OSError, ValueError, KeyError):
                local = None
        if local and not _listening(local):  # a head of ours that is gone (a reboot): ray.init would wait minutes
            last, local = f"the local Ray at {local} is gone", None
        for attempt in ([address] if address else ([local] if local else []) + (["start"] if start_local else [])):
            target = start_local_head() if attempt == "start" else attempt
            try:
                local_ip = {"_node_ip_address": "127.0.0.1"} if str(target).startswith("127.0.0.1:") else {}
                ray.init(address=target, namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR",
                         configure_logging=False, **local_ip)
                return target
            except Exception as err:  # ConnectionError, RuntimeError, TimeoutError: try the next way
                last = err
        raise ClusterError(f"Could not reach Ray at {address or local or 'a local head'}: {last}. "
                           + ("Check UEO_RAY_ADDRESS / RAY_ADDRESS and that the cluster's token is set "
                              "(RAY_AUTH_TOKEN)." if address else "Start the app with bash scripts/app.sh."))


def cluster_gpus() -> int:
    import ray
    return int(ray.cluster_resources().get("GPU", 0))


def cluster_slots() -> int:
    """How many runs train at once on the cluster now: its GPUs, or else its ``ueo_slot`` resources."""
    import ray
    res = ray.cluster_resources()
    return int(res.get("GPU", 0)) or int(res.get(SLOT, 0)) or 1


def head_started() -> Optional[float]:
    """When the local head of this project (``UEO_RAY_DIR``) was started, or None (none, or an operator's)."""
    if configured_address():
        return None
    try:
        return float(json.loads((STATE_DIR / "address.json").read_text())["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
