"""Load on loopback: 20 simultaneous generate requests against a real ``cadenza serve`` process.

Each request is either accepted and finishes, or is refused at once with a clear "busy" (503);
the server log shows no exception; everything ends within a bounded time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from studio_helpers import CSRF, wait_job

from cadenza.history import History

N_REQUESTS = 20
MAX_CONCURRENT, QUEUE = 1, 8


@pytest.fixture
def served(debug_model_dir, tmp_path):
    """``cadenza serve`` on a free loopback port; yields (url, log lines, root) and stops it with Ctrl+C."""
    root = tmp_path / "studio"
    cmd = [
        sys.executable, "-m", "cadenza", "serve", "--model", str(debug_model_dir), "--port", "0", "--root", str(root),
        "--max-concurrent", str(MAX_CONCURRENT), "--queue", str(QUEUE), "--threads", "1",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "400"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "ready at" in line:
                ready.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert ready.wait(60), "server did not start:\n" + "".join(lines)
        url = re.search(r"ready at (http://\S+)", "".join(lines)).group(1)
        assert url.startswith("http://127.0.0.1:")  # loopback by default
        yield url, lines, root
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(5)


def test_twenty_concurrent_requests(served):
    url, lines, root = served
    barrier = threading.Barrier(N_REQUESTS)

    def one(i: int) -> httpx.Response:
        data = {"prompt": f"load {i}", "seed": str(i), "duration": "2", "steps": "4", "rhythm_mode": "bpm", "bpm": "100"}
        if i % 2:
            data |= {"melody_mode": "notes", "melody_notes": "C4:1 D4:1 E4:2", "dynamics_mode": "shape", "dynamics_shape": "swell"}
        with httpx.Client(base_url=url, headers=CSRF, timeout=30) as c:
            barrier.wait(10)
            return c.post("/api/generate", data=data)

    t0 = time.monotonic()
    with ThreadPoolExecutor(N_REQUESTS) as pool:
        responses = list(pool.map(one, range(N_REQUESTS)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {202, 503}, [r.text for r in responses if r.status_code not in (202, 503)]
    refused = [r for r in responses if r.status_code == 503]
    accepted = [r.json()["id"] for r in responses if r.status_code == 202]
    assert 1 <= len(accepted) and refused, statuses  # 20 at once cannot all fit in 1 running + 8 waiting
    for r in refused:
        assert "busy" in r.json()["error"] and "try again" in r.json()["hint"] and int(r.headers["retry-after"]) > 0
    with httpx.Client(base_url=url, headers=CSRF, timeout=30) as c:
        jobs = [wait_job(c, jid, timeout=60) for jid in accepted]
        assert [j["status"] for j in jobs] == ["done"] * len(accepted), [j.get("error") for j in jobs]
        assert c.get("/api/health").json()["queue"]["running"] == 0
        assert c.post("/api/generate", data={"duration": "1", "steps": "2"}).status_code == 202  # serving normally afterwards
    elapsed = time.monotonic() - t0
    assert elapsed < 50, f"the burst took {elapsed:.1f} s"
    time.sleep(0.2)
    log = "".join(lines)
    for bad in ("Traceback", "Exception", "ERROR", "error:"):
        assert bad not in log, log
    assert History(root, sweep=False).count() >= len(accepted)
