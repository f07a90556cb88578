"""The app (or any Streamlit script) on a free port of 127.0.0.1, for the benches and the browser tests: started,
waited for until /_stcore/health answers, and its log kept."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("UEO_CHROMIUM", "/usr/bin/chromium")  # Debian's, as the browser tests use
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(script: str | Path, env: dict, log: Path, port: int | None = None,
          timeout_s: float = 120) -> tuple[subprocess.Popen, str]:
    """``streamlit run script`` with ``env``, its output in ``log``; returns (process, url) once it answers.
    Raises RuntimeError with the log's tail when it does not within ``timeout_s``."""
    port = port or free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false",
                             # no file watcher: what is measured is the app as served, not a reload when the
                             # working tree changes (others editing it overflowed inotify and stalled the server)
                             "--server.fileWatcherType", "none"], cwd=ROOT, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.25)
    proc.kill()
    raise RuntimeError(f"streamlit did not start: {Path(log).read_text()[-2000:]}")
