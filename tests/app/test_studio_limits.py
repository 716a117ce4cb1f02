"""Studio reliability (issue 20): stalled bodies time out, odd pages and curves are 4xx, upload names are never paths,
and jobs a kill -9 left staged are finished (or failed with a hint) when the studio starts again."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from studio_helpers import CSRF, FAST, wait_job, wav_bytes

from cadenza.app.config import Limits, StudioConfig
from cadenza.app.server import BackgroundServer
from cadenza.app.studio import JOB_FILE, Studio

LIMITS = Limits(max_upload_mb=0.5, max_upload_s=3.0, idle_timeout_s=1.0, body_timeout_s=4.0)


@pytest.fixture(scope="module")
def server(debug_gen, tmp_path_factory):
    studio = Studio(StudioConfig(root=tmp_path_factory.mktemp("studio_limits"), queue=4, limits=LIMITS), generators=[debug_gen])
    with BackgroundServer(studio) as srv:
        yield srv
    studio.close()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, headers=CSRF, timeout=30) as c:
        yield c


@pytest.mark.parametrize("query", ids=lambda q: q[:30], argvalues=["offset=99999999999999999999", "offset=-1", "limit=1e3", "limit=0", "offset=1e400", "limit=%00", "offset=" + "9" * 5000])
def test_history_paging_is_a_400_never_a_500(client, query):
    r = client.get(f"/api/history?{query}")
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("invalid page") and r.json()["hint"]


@pytest.mark.parametrize("points", [
    "[[0,-20],[0.5,1e16]]",  # a level of 1e16 dB
    "[[0,-20],[0.5," + "9" * 400 + "]]",  # an integer past float range (was OverflowError → 500)
    "[[0,-20],[0.5," + "9" * 5000 + "]]",  # past Python's int-parsing limit
    "[" * 5000 + "]" * 5000,  # nested past the JSON parser's recursion limit
    "[[0,-20],[0.5,-20,3]]", "[[0,-20],[0.5]]", "[[0,-20],[0.5,null]]", '[[0,-20],[0.5,"a"]]', "[[0,-20],[1e16,-20]]",
    "[[0,-20]," * 40_000,  # longer than a form field may be: refused by the form parser
], ids=lambda p: p[:24] + (f"..{len(p)}" if len(p) > 24 else ""))
def test_odd_drawn_curves_are_400s_with_hints(client, points):
    r = client.post("/api/generate", data={**FAST, "dynamics_mode": "drawn", "dynamics_points": points})
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("dynamics_points:" if len(points) < 100_000 else "Field exceeded") and r.json()["hint"]
    assert client.get("/api/health").json()["ok"]


def test_a_curve_too_long_to_be_one_is_refused_before_parsing():
    from cadenza.app.validation import RequestError, parse_points

    with pytest.raises(RequestError, match="characters is too long"):
        parse_points("[[0,-20]," * 20_000, 1.0, LIMITS)


@pytest.mark.parametrize("name", ["%2e%2e%2fx.wav", "..%2Fx.wav", "%2Fetc%2Fx.wav", "a\nb.wav", "a%0Ab.wav", "a\x7fb.wav", "evil\u202egpj.wav", "C:\\Windows\\x.wav", "..\\x.wav", "x.wav"])
def test_upload_names_are_refused_or_stored_sanitised(client, server, name):
    r = client.post("/api/generate", data={**FAST, "rhythm_mode": "audio"}, files={"rhythm_file": (name, wav_bytes(1.0))})
    if r.status_code == 400:
        assert "file name" in r.json()["error"] and r.json()["hint"]
        return
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["id"])
    stored = job["generation"]["request"]["rhythm"]
    assert stored["file"] == "inputs/rhythm_file.wav"  # the studio's own name is the only one used as a path
    upload_name = stored["upload_name"]
    assert not any(c in upload_name for c in "/\\\n\r\x00\x7f\u202e") and ".." not in upload_name and "%2" not in upload_name.lower()
    folder = server.studio.history.folder(job["id"])
    assert sorted(p.name for p in (folder / "inputs").iterdir()) == ["rhythm_file.wav"]


def _raw(server, request: bytes, wait_s: float) -> tuple[bytes, float]:
    with socket.create_connection((server.host, server.port), timeout=wait_s) as s:
        t0 = time.monotonic()
        s.sendall(request)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
        return data, time.monotonic() - t0


def test_a_body_shorter_than_its_content_length_times_out(client, server):
    body = b"--x\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nhello"
    head = (
        f"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Requested-With: cadenza\r\n"
        f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {len(body) + 100_000}\r\n\r\n"
    ).encode()
    answer, waited = _raw(server, head + body, wait_s=15)
    assert answer.split(b"\r\n")[0].endswith(b"408 Request Timeout"), answer[:300]
    assert b'"error":"the request body did not arrive in time' in answer and waited < 10
    assert client.get("/api/health").json()["ok"]
    assert not list(server.studio.history.staging.iterdir())


def test_a_trickling_body_is_cut_off_by_the_total_deadline(client, server):
    head = (
        "POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Requested-With: cadenza\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    with socket.create_connection((server.host, server.port), timeout=20) as s:
        s.sendall(head + b"--x\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\n")
        t0, answer = time.monotonic(), b""
        s.settimeout(0.5)
        while time.monotonic() - t0 < 15 and not answer:
            try:
                s.sendall(b"a")  # one byte of the prompt every half second: never idle for a second, never done
            except OSError:
                break
            try:
                answer = s.recv(65536)
            except socket.timeout:
                pass
        waited = time.monotonic() - t0
    assert answer.split(b"\r\n")[0].endswith(b"408 Request Timeout"), answer[:300]
    assert LIMITS.body_timeout_s - 1 < waited < LIMITS.body_timeout_s + 4
    assert client.get("/api/health").json()["ok"]


@pytest.mark.parametrize("partial", [b"", b"GET /api/health HTTP/1.1\r\nHost: 127"])
def test_a_client_that_never_finishes_its_headers_is_disconnected(client, server, monkeypatch, partial):
    import cadenza.app.server as server_module

    monkeypatch.setattr(server_module, "HEADER_TIMEOUT_S", 1.0)
    with socket.create_connection((server.host, server.port), timeout=15) as s:
        t0 = time.monotonic()
        s.sendall(partial)
        assert s.recv(100) == b""  # closed by the server, not by our 15 s timeout
        assert time.monotonic() - t0 < 5
    assert client.get("/api/health").json()["ok"]  # keep-alive clients that do send requests are unaffected


# ---------------------------------------------------------------------------------- kill -9 and restart
CHILD = textwrap.dedent("""
    import sys, threading
    from studio_helpers import GatedGenerator
    from cadenza.app.config import StudioConfig
    from cadenza.app.server import BackgroundServer
    from cadenza.app.studio import Studio
    from cadenza.pipeline import Cadenza

    root, model = sys.argv[1], sys.argv[2]
    blocked = GatedGenerator(Cadenza.load(model), gate=threading.Event())  # every generation waits: jobs stay staged
    studio = Studio(StudioConfig(root=root, max_concurrent=1, queue=8), generators=[blocked])
    with BackgroundServer(studio) as srv:
        print(srv.url, flush=True)
        threading.Event().wait()
""")


def _killed_with_jobs_in_flight(tmp_path: Path, debug_model_dir: Path, n_jobs: int) -> tuple[Path, list[str]]:
    """Start a studio in a child process, queue ``n_jobs`` that cannot finish, kill -9 it; return (root, job ids)."""
    root = tmp_path / "root"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script), str(root), str(debug_model_dir)], stdout=subprocess.PIPE, env=env, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://"), url
        with httpx.Client(base_url=url, headers=CSRF, timeout=30) as c:
            ids = []
            for i in range(n_jobs):
                r = c.post("/api/generate", data={**FAST, "prompt": f"job {i}", "seed": str(i), "dynamics_mode": "shape"})
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
            assert c.get("/api/health").json()["queue"]["running"] == 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert sorted(p.name for p in (root / "staging").iterdir()) == sorted(ids)  # what a kill -9 leaves behind
    return root, ids


def test_jobs_staged_at_a_kill_are_finished_after_restart(debug_gen, debug_model_dir, tmp_path):
    root, ids = _killed_with_jobs_in_flight(tmp_path, debug_model_dir, 3)
    (root / "staging" / "0123456789ab").mkdir()  # a request killed while its uploads were still arriving: no job.json
    studio = Studio(StudioConfig(root=root, max_concurrent=1, queue=8), generators=[debug_gen])
    try:
        assert sorted(studio.recovered["requeued"]) == sorted(ids) and studio.recovered["failed"] == []
        assert studio.recovered["swept"] == ["0123456789ab"]
        with BackgroundServer(studio) as srv, httpx.Client(base_url=srv.url, headers=CSRF, timeout=30) as c:
            for i, gid in enumerate(ids):  # the ids handed out before the kill still answer
                job = wait_job(c, gid, timeout=60)
                assert job["status"] == "done", job
                gen = job["generation"]
                assert gen["prompt"] == f"job {i}" and gen["seed"] == i and gen["request"]["dynamics"]["mode"] == "shape"
                assert c.get(gen["urls"]["audio"]).status_code == 200
    finally:
        studio.close()
    assert not list((root / "staging").iterdir())  # nothing left behind
    assert sorted(p.name for p in (root / "generations").iterdir()) == sorted(ids)  # nothing lost


def test_staged_jobs_without_room_after_restart_are_failed_with_a_hint(debug_gen, debug_model_dir, tmp_path):
    root, ids = _killed_with_jobs_in_flight(tmp_path, debug_model_dir, 3)
    studio = Studio(StudioConfig(root=root, max_concurrent=1, queue=0), generators=[debug_gen])  # room for one
    try:
        assert len(studio.recovered["requeued"]) == 1 and len(studio.recovered["failed"]) == 2
        studio.queue.wait(studio.recovered["requeued"][0], timeout=60)
        rows = {g.id: g for g in studio.history}
        assert sorted(rows) == sorted(ids)
        for gid in studio.recovered["failed"]:
            assert rows[gid].status == "failed" and "restarted" in rows[gid].error and "rerun" in rows[gid].error
            assert json.loads(rows[gid].path("request").read_text())["seed"] == rows[gid].seed  # rerunnable
        assert rows[studio.recovered["requeued"][0]].status == "done"
    finally:
        studio.close()
    assert not list((root / "staging").iterdir())


def test_a_job_killed_between_its_move_and_its_row_is_requeued(debug_gen, tmp_path):
    studio = Studio(StudioConfig(root=tmp_path, queue=2), generators=[debug_gen])
    gid = "00000000beef"
    stage = studio.history.stage(gid)
    studio._stage_job(stage, studio._complete(__import__("cadenza.app.validation", fromlist=["x"]).parse_form({"prompt": "moved"}, LIMITS)))
    studio.close()
    os.replace(stage, tmp_path / "generations" / gid)  # as History.commit does just before its INSERT
    again = Studio(StudioConfig(root=tmp_path, queue=2), generators=[debug_gen])
    try:
        assert again.recovered["requeued"] == [gid]
        assert again.queue.wait(gid, timeout=60).status == "done"
        assert again.history.get(gid).prompt == "moved" and (tmp_path / "generations" / gid / JOB_FILE).is_file()
    finally:
        again.close()
