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

__all__ = ["free_port", "start_server"]


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
