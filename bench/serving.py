"""A real ``geo-service serve`` for the benches: started on a free port, waited
for, its log in the bench's folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["free_port", "start_server", "warm_nearest", "worker_rss_gib"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    folder: Path, env: dict[str, str], *args: str, deadline_s: float = 120
) -> tuple[subprocess.Popen, str]:
    """``geo-service serve`` with ``env`` added to this environment and ``args``
    after it (``--workers 3``); returns the process and its base URL once
    ``/conformance`` answers. Exits the bench if the server dies or never answers."""
    port = free_port()
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "geo_service.cli", "serve", "--port", str(port), *args],
        env=dict(os.environ, **env),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited; see {folder / 'server.log'}")
        try:
            if httpx.get(f"{base}/conformance", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("server did not start")


def warm_nearest(base: str, workers: int, point: tuple[float, float] = (118.05, 36.80)) -> float:
    """Ask ``/nearest`` until every worker has built its index (answers stay
    fast for a while, over connections spread across the workers); returns
    the seconds it took."""
    started = time.perf_counter()
    fast = 0
    url = f"{base}/nearest?lon={point[0]}&lat={point[1]}&k=5"
    while fast < 10 * workers:
        t0 = time.perf_counter()
        with httpx.Client(timeout=3600) as http:  # a new connection: any worker may take it
            http.get(url).raise_for_status()
        fast = fast + 1 if time.perf_counter() - t0 < 0.5 else 0
    return time.perf_counter() - started


def worker_rss_gib(process: subprocess.Popen) -> list[float]:
    """Resident memory of the server's worker processes (the server itself
    when it runs one worker in-process), GiB each."""
    pids = [process.pid]
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    if children.exists():
        pids = [int(p) for p in children.read_text().split()] or pids
    sizes = []
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            continue
        rss = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        sizes.append(int(rss.split()[1]) / 2**20)
    return sizes
