"""HTTP fuzz: seeded malformed requests to the studio: form fields, uploads, encodings, truncated bodies, paths, queries.

Every answer must be a valid result (2xx) or a JSON 4xx with an error and a hint (503 "busy" is a
clean refusal too), never a 5xx crash or a traceback, within the client's timeout; the server must
answer ``/api/health`` after each; every accepted job must end done or failed; and nothing may be
written outside the studio's root.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse

import httpx
import pytest
from conftest import snapshot
from contract import METER_BAD, NUMBER_BAD, TEXT_BAD, Draw, odd_audio_files

from cadenza.app.config import Limits, StudioConfig
from cadenza.app.server import BackgroundServer
from cadenza.app.studio import Studio

N_CASES = 170
CSRF = {"X-Requested-With": "cadenza"}
LIMITS = Limits(max_upload_mb=0.2, max_upload_s=3.0, max_duration_s=2.0, max_steps=2, idle_timeout_s=0.5, body_timeout_s=3.0)
FIELDS = {
    "prompt": ("prompt", TEXT_BAD), "duration": ("duration", NUMBER_BAD), "seed": ("seed", NUMBER_BAD), "steps": ("steps", NUMBER_BAD),
    "cfg": ("cfg", NUMBER_BAD), "bpm": ("bpm", NUMBER_BAD), "meter": ("meter", METER_BAD),
}
MODES = {"melody_mode": ["none", "notes", "midi", "audio", "sing", ""], "dynamics_mode": ["none", "shape", "drawn", "loud"], "rhythm_mode": ["none", "bpm", "audio", "x"]}
POINTS = ["[[0,-20],[0.5,-10]]", "[[0,-20],[0.5,1e16]]", "[[0,-20],[0.5," + "9" * 400 + "]]", "[[0,", "[]", "[[0,0]]", '{"a":1}', "[" * 3000, "null", "[[0,-20],[0.4,-20],[0.2,-20]]"]
NAMES = ["x.wav", "%2e%2e%2fx.wav", "a\nb.wav", "C:\\Windows\\x.wav", "../x.wav", "", "x.exe", "x" * 300 + ".wav", "ü.wav", "x.mid", "\x00.wav", "x.WAV"]


@pytest.fixture(scope="module")
def studio_server(fuzz_gen, tmp_path_factory):
    top = tmp_path_factory.mktemp("http_fuzz")
    root = top / "studio"
    studio = Studio(StudioConfig(root=root, max_concurrent=1, queue=2, limits=LIMITS), generators=[fuzz_gen])
    with BackgroundServer(studio) as srv:
        yield {"srv": srv, "studio": studio, "top": top, "root": root}
    studio.close()


def _form(d: Draw) -> tuple[dict, dict | None]:
    data: dict[str, str] = {"duration": "0.5", "steps": "1"}
    for name, (kind, bad) in FIELDS.items():
        if d.chance(0.5):
            data[name] = d.value(kind, bad)[0] if kind in ("prompt", "duration", "seed", "steps", "cfg", "bpm", "meter") else d.bad_value(bad)
    for name, modes in MODES.items():
        if d.chance(0.4):
            data[name] = d.pick(modes)
    if data.get("melody_mode") == "notes" or d.chance(0.1):
        data["melody_notes"] = d.value("notes", TEXT_BAD)[0]
    if data.get("dynamics_mode") == "drawn" or d.chance(0.1):
        data["dynamics_points"] = d.pick(POINTS)
    if data.get("dynamics_mode") == "shape":
        data["dynamics_shape"] = d.value("shape", TEXT_BAD)[0].split(":")[0]
        if d.chance(0.5):
            data["dynamics_start_db"] = d.value("db")[0]
    for name in ("melody", "rhythm", "dynamics"):
        if d.chance(0.1):
            data[f"{name}_start"], data[f"{name}_end"] = d.value("time")[0], d.value("duration")[0]
    files = None
    if d.chance(0.35) or data.get("rhythm_mode") == "audio" or data.get("melody_mode") in ("midi", "audio"):
        field = d.pick(["rhythm_file", "melody_file", "other_file"])
        content = d.pick(list(odd_audio_files().values()) + [b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00`", b"\0" * 300_000])
        files = {field: (d.pick(NAMES), content)}
    return data, files


def _raw_request(srv, d: Draw) -> bytes:
    """A request the client library would never send: broken encodings, boundaries, lengths."""
    boundary = "fz"
    part = d.pick([
        b'--fz\r\nContent-Disposition: form-data; name="prompt"\r\n\r\n\xff\xfe\xfa bad utf-8\r\n--fz--\r\n',
        b'--fz\r\nContent-Disposition: form-data; name="duration"\r\n\r\n0.5\r\n--fz\r\nContent-Disposition: form-data; name="rhythm_file"; filename="x.wav"\r\n\r\nRIFF',
        b'--fz\r\nContent-Disposition: form-data; name="seed"\r\n\r\n1\r\n',  # no closing boundary
        b"--other\r\n\r\nno such boundary\r\n--other--\r\n",
        b'--fz\r\nContent-Disposition: form-data; name=""\r\n\r\nx\r\n--fz--\r\n',
        b"prompt=%ff%fe&duration=0.5&seed=%00",
        b'--fz\r\nContent-Disposition: form-data; name="rhythm_file"; filename="%2e%2e%2f..%5cx.wav"\r\nContent-Type: audio/wav\r\n\r\n' + odd_audio_files()["good.wav"] + b"\r\n--fz--\r\n",
    ])
    ctype = "application/x-www-form-urlencoded" if part.startswith(b"prompt=") else d.pick([f"multipart/form-data; boundary={boundary}", "multipart/form-data", "text/plain", f"multipart/form-data; boundary={boundary}"])
    length = len(part) + (d.pick([0, 0, 0, 50]) if d.chance(0.7) else 0)  # 50 more promised than sent: must time out, not hang
    head = f"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Requested-With: cadenza\r\nContent-Type: {ctype}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    return head.encode() + part


def _send_raw(srv, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection((srv.host, srv.port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.find(b"\r\n\r\n") + 4 + _length(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else -1
    return status, data.split(b"\r\n\r\n", 1)[-1]


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def _get(d: Draw) -> tuple[str, str]:
    gid = d.pick(["0123456789ab", "zz", "%2e%2e", "..%2F..%2Fhistory.sqlite3", "a" * 500, "012345678%00", "ÿ"])
    path = d.pick([
        f"/api/history?limit={urllib.parse.quote(d.bad_value())}&offset={urllib.parse.quote(d.bad_value())}",
        f"/api/history?offset={d.pick(['99999999999999999999', '-1', '1e3', '0'])}",
        f"/api/history/{gid}", f"/api/history/{gid}/{d.pick(['audio', 'plot', 'secrets', '..', '%2e%2e'])}", f"/api/jobs/{gid}",
        "/static/..%2F..%2Fhistory.py", "/static/app.js", "/api/options", "/nope", "/api/history?limit=10&limit=abc",
    ])
    return d.pick(["GET", "GET", "GET", "PUT", "DELETE", "POST"]), path


def test_http_fuzz(studio_server) -> None:
    srv, studio, top, root = studio_server["srv"], studio_server["studio"], studio_server["top"], studio_server["root"]
    before = snapshot(top, skip=root)
    d = Draw(seed=22)
    failures, accepted, statuses = [], [], {}
    with httpx.Client(base_url=srv.url, headers=CSRF, timeout=15) as c:
        for i in range(N_CASES):
            kind = d.pick(["form", "form", "form", "form", "raw", "get", "get"])
            t0 = time.perf_counter()
            try:
                if kind == "form":
                    data, files = _form(d)
                    desc = f"POST form {json.dumps(data)[:300]} files={None if files is None else {k: (v[0][:40], len(v[1])) for k, v in files.items()}}"
                    r = c.post("/api/generate", data=data, files=files)
                    status, body = r.status_code, r.content
                elif kind == "raw":
                    request = _raw_request(srv, d)
                    desc = f"raw {request[:200]!r}"
                    status, body = _send_raw(srv, request)
                else:
                    method, path = _get(d)
                    desc = f"{method} {path[:200]}"
                    r = c.request(method, path)
                    status, body = r.status_code, r.content
            except (httpx.HTTPError, OSError) as exc:
                failures.append(f"{desc}: no answer ({type(exc).__name__}: {exc})")
                continue
            statuses[status] = statuses.get(status, 0) + 1
            if time.perf_counter() - t0 > 8:
                failures.append(f"{desc}: answered after {time.perf_counter() - t0:.1f} s")
            if b"Traceback" in body:
                failures.append(f"{desc}: a traceback in the answer")
            if status >= 500 and status != 503 or status < 0:
                failures.append(f"{desc}: {status} {body[:300]!r}")
            elif status >= 400 and not body.startswith(b"{"):
                failures.append(f"{desc}: {status} that is not JSON: {body[:200]!r}")
            elif status >= 400:
                answer = json.loads(body)
                if not answer.get("error") or not answer.get("hint"):
                    failures.append(f"{desc}: {status} without an error and a hint: {answer}")
            elif status == 202:
                accepted.append(json.loads(body)["id"])
            health = c.get("/api/health")
            if health.status_code != 200 or not health.json()["ok"]:
                failures.append(f"{desc}: the server stopped answering /api/health")
                break
        deadline = time.monotonic() + 60
        while studio.queue.stats()["running"] or studio.queue.stats()["waiting"]:
            assert time.monotonic() < deadline, "the queue never drained"
            time.sleep(0.1)
        ends = [c.get(f"/api/jobs/{gid}").json()["status"] for gid in accepted]
    assert not failures, f"{len(failures)} of {N_CASES} HTTP cases failed:\n" + "\n".join(failures[:20])
    assert all(s in ("done", "failed") for s in ends), ends
    assert not list(studio.history.staging.iterdir()), "a request left files in staging/"
    assert snapshot(top, skip=root) == before, "a request wrote outside the studio's root"
    assert len(accepted) >= 3 and sum(v for k, v in statuses.items() if 400 <= k < 500) >= 60, statuses
    print(f"HTTP fuzz: {N_CASES} cases, statuses {dict(sorted(statuses.items()))}, {len(accepted)} accepted ({ends.count('done')} done)")
