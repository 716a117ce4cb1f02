"""The studio's HTTP API on loopback: generation round trip, uploads, spans, bad inputs, guards, busy answers."""

from __future__ import annotations

import io
import json
import socket
import threading
import zipfile

import httpx
import numpy as np
import pytest
import soundfile as sf
from studio_helpers import CSRF, FAST, GatedGenerator, midi_bytes, wait_job, wav_bytes

from cadenza.app.config import Limits, StudioConfig
from cadenza.app.server import BackgroundServer
from cadenza.app.studio import Studio
from cadenza.audio import FRAME_RATE, SAMPLE_RATE
from cadenza.controls.base import ControlSet
from cadenza.errors import CadenzaError

LIMITS = Limits(max_upload_mb=0.25, max_upload_s=3.0)


@pytest.fixture(scope="module")
def server(debug_gen, tmp_path_factory):
    root = tmp_path_factory.mktemp("studio_api")
    studio = Studio(StudioConfig(root=root, max_concurrent=1, queue=2, limits=LIMITS), generators=[debug_gen])
    with BackgroundServer(studio) as srv:
        yield srv
    studio.close()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, headers=CSRF, timeout=30) as c:
        yield c


def generate(client, data: dict, files: dict | None = None) -> dict:
    r = client.post("/api/generate", data={**FAST, **data}, files=files)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/api/jobs/{r.json()['id']}"
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "done", job
    return job["generation"]


def stored_controls(client, gen: dict) -> ControlSet:
    r = client.get(gen["urls"]["controls_npz"])
    assert r.status_code == 200
    path = io.BytesIO(r.content)
    with np.load(path, allow_pickle=False) as z:
        return ControlSet(
            int(z["n_frames"]), z["melody"], z["melody_mask"], z["dynamics"], z["dynamics_mask"], z["rhythm"], z["rhythm_mask"],
            z["melody_notes"], z["dynamics_points"], z["beats"],
        )


def test_page_and_options_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and "Cadenza studio" in page.text
    assert "http" not in page.text.split("<body>")[0].replace('name="viewport"', "")  # no external assets in <head>
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200
    opts = client.get("/api/options").json()
    assert opts["limits"]["max_duration_s"] == 60.0 and "crescendo" in opts["shapes"]
    assert opts["model_id"].startswith("cadenza-generator-debug@")


def test_generate_round_trip_and_downloads(client):
    gen = generate(client, {
        "prompt": "calm piano", "seed": "7", "melody_mode": "notes", "melody_notes": "C4:1 E4:1",
        "dynamics_mode": "shape", "dynamics_shape": "swell", "rhythm_mode": "bpm", "bpm": "120",
    })
    assert gen["status"] == "done" and gen["seed"] == 7 and gen["prompt"] == "calm piano"
    audio = client.get(gen["urls"]["audio"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    wave, sr = sf.read(io.BytesIO(audio.content))
    assert sr == SAMPLE_RATE and len(wave) == SAMPLE_RATE and np.abs(wave).max() > 0
    plot = client.get(gen["urls"]["plot"])
    assert plot.content[:8] == b"\x89PNG\r\n\x1a\n"
    z = zipfile.ZipFile(io.BytesIO(client.get(gen["urls"]["controls_zip"]).content))
    assert {"melody.csv", "dynamics.csv", "rhythm.csv", "controls.npz", "request.json"} <= set(z.namelist())
    assert z.read("melody.csv").decode().splitlines()[0].startswith("start,end,pitch")
    cs = stored_controls(client, gen)
    assert cs.given() == ["melody", "dynamics", "rhythm"]
    assert set(cs.pitch_classes()[cs.melody_mask > 0]) == {0, 4}  # C4 then E4, one beat (0.5 s) each
    down = client.get(gen["urls"]["audio"], params={"download": 1})
    assert down.headers["content-disposition"].startswith("attachment") and f"cadenza-{gen['id']}.wav" in down.headers["content-disposition"]
    listed = client.get("/api/history").json()
    assert gen["id"] in [g["id"] for g in listed["items"]] and listed["total"] >= 1


def test_partial_spans_and_drawn_dynamics(client):
    points = [[0.0, -40.0], [0.4, -20.0], [0.9, -30.0]]
    gen = generate(client, {
        "melody_mode": "notes", "melody_notes": "G4:4", "melody_start": "0.5",
        "dynamics_mode": "drawn", "dynamics_points": json.dumps(points), "dynamics_end": "0.6",
    })
    cs = stored_controls(client, gen)
    t = np.arange(cs.n_frames) / FRAME_RATE
    assert not cs.melody_mask[t < 0.49].any() and cs.melody_mask[t > 0.51].all()
    assert set(cs.pitch_classes()[cs.melody_mask > 0]) == {7}
    assert cs.dynamics_mask[t <= 0.59].all() and not cs.dynamics_mask[t > 0.61].any()
    k = int(np.argmin(np.abs(t - 0.4)))
    assert abs(cs.dynamics[k] - np.interp(t[k], *np.asarray(points).T)) < 0.1
    assert cs.given() == ["melody", "dynamics"]


def test_uploads_midi_and_recording(client, server):
    gen = generate(client, {"melody_mode": "midi", "rhythm_mode": "audio"}, files={
        "melody_file": ("my tune.mid", midi_bytes((62, 66, 69))), "rhythm_file": ("clicks.wav", wav_bytes(1.0)),
    })
    assert gen["request"]["melody"]["upload_name"] == "my tune.mid"
    cs = stored_controls(client, gen)
    assert set(cs.pitch_classes()[cs.melody_mask > 0]) == {2, 6, 9}
    assert cs.rhythm_mask.any()
    inputs = sorted(p.name for p in (server.studio.history.folder(gen["id"]) / "inputs").iterdir())
    assert inputs == ["melody_file.mid", "rhythm_file.wav"]  # stored under the studio's names, never the client's


def test_control_guidance_is_a_form_field_stored_with_the_request(client):
    options = client.get("/api/options").json()
    assert "control_cfg" in options["defaults"]
    form = {"prompt": "folk", "seed": "3", "melody_mode": "notes", "melody_notes": "C4:1 E4:1", "rhythm_mode": "bpm"}
    off = generate(client, {**form, "control_cfg": "0"})
    per = generate(client, {**form, "control_cfg": "melody=4, rhythm=1"})
    assert off["request"]["control_cfg"] == 0.0 and per["request"]["control_cfg"] == {"melody": 4.0, "rhythm": 1.0}
    assert client.get(off["urls"]["audio"]).content != client.get(per["urls"]["audio"]).content
    default = generate(client, form)  # blank: the model's default, stored so a re-run is exact
    assert default["request"]["control_cfg"] == options["defaults"]["control_cfg"]
    r = client.post(f"/api/history/{per['id']}/rerun")
    again = wait_job(client, r.json()["id"])["generation"]
    assert client.get(again["urls"]["audio"]).content == client.get(per["urls"]["audio"]).content


def test_dynamics_guidance_is_a_form_field_stored_with_the_request(client):
    options = client.get("/api/options").json()
    assert options["defaults"]["dynamics_guidance"] == 0.0  # off by default
    form = {"prompt": "folk", "seed": "3", "dynamics_mode": "shape", "dynamics_shape": "crescendo"}
    plain = generate(client, form)
    guided = generate(client, {**form, "dynamics_guidance": "1"})
    assert plain["request"]["dynamics_guidance"] == 0.0 and guided["request"]["dynamics_guidance"] == 1.0
    assert client.get(plain["urls"]["audio"]).content != client.get(guided["urls"]["audio"]).content


def test_downbeat_guidance_is_a_form_field_stored_with_the_request(client):
    options = client.get("/api/options").json()
    assert options["defaults"]["downbeat_cfg"] == 0.0  # the debug model's config sets none
    form = {"prompt": "march", "seed": "3", "rhythm_mode": "bpm", "bpm": "120"}
    plain = generate(client, form)
    guided = generate(client, {**form, "downbeat_cfg": "4"})
    assert plain["request"]["downbeat_cfg"] == 0.0 and guided["request"]["downbeat_cfg"] == 4.0
    assert client.get(plain["urls"]["audio"]).content != client.get(guided["urls"]["audio"]).content


def test_rerun_over_http_reproduces_audio(client):
    first = generate(client, {"prompt": "folk", "seed": "11", "dynamics_mode": "shape"})
    r = client.post(f"/api/history/{first['id']}/rerun")
    assert r.status_code == 202
    again = wait_job(client, r.json()["id"])["generation"]
    assert again["rerun_of"] == first["id"] and again["seed"] == 11 and again["id"] != first["id"]
    assert client.get(again["urls"]["audio"]).content == client.get(first["urls"]["audio"]).content


BAD = [
    ("unknown note", {"melody_mode": "notes", "melody_notes": "C4:1 H4:1"}, None, 400, "unknown note 'H4'"),
    ("empty upload", {"melody_mode": "midi"}, {"melody_file": ("tune.mid", b"")}, 400, "is empty (0 bytes)"),
    ("oversized upload", {"rhythm_mode": "audio"}, {"rhythm_file": ("big.wav", b"\0" * 300_000)}, 413, "larger than 0.25 MB"),
    ("recording too long", {"rhythm_mode": "audio"}, {"rhythm_file": ("long.wav", wav_bytes(4.0, sr=8000))}, 413, "recordings may be at most"),
    ("negative duration", {"duration": "-2"}, None, 400, "duration: -2 s is out of range"),
    ("duration over limit", {"duration": "61"}, None, 400, "duration: 61 s is out of range"),
    ("not a number", {"seed": "abc"}, None, 400, "seed: 'abc' is not a number"),
    ("path filename", {"melody_mode": "midi"}, {"melody_file": ("../../etc/passwd", midi_bytes())}, 400, "looks like a path"),
    ("windows path filename", {"melody_mode": "midi"}, {"melody_file": ("..\\..\\tune.mid", midi_bytes())}, 400, "looks like a path"),
    ("not a MIDI name", {"melody_mode": "midi"}, {"melody_file": ("passwd", b"root:x:0:0")}, 400, "is not a MIDI file"),
    ("garbage MIDI", {"melody_mode": "midi"}, {"melody_file": ("x.mid", b"definitely not midi")}, 400, "melody:"),
    ("garbage audio", {"rhythm_mode": "audio"}, {"rhythm_file": ("x.wav", b"RIFF....WAVEjunk")}, 400, "cannot be read as audio"),
    ("missing file", {"rhythm_mode": "audio"}, None, 400, "rhythm_file: no file uploaded"),
    ("unknown mode", {"melody_mode": "sing"}, None, 400, "melody_mode: unknown choice"),
    ("bad curve JSON", {"dynamics_mode": "drawn", "dynamics_points": "[[0,"}, None, 400, "dynamics_points: not valid JSON"),
    ("span backwards", {"rhythm_mode": "bpm", "rhythm_start": "0.8", "rhythm_end": "0.2"}, None, 400, "is not after its start"),
    ("loud shape", {"dynamics_mode": "shape", "dynamics_start_db": "-5", "dynamics_range_db": "20"}, None, 400, "dynamics"),
    ("control guidance not a number", {"control_cfg": "strict"}, None, 400, "control_cfg must be a number"),
    ("control guidance unknown control", {"control_cfg": "tempo=3"}, None, 400, "unknown control 'tempo'"),
    ("control guidance out of range", {"control_cfg": "1e9"}, None, 400, "out of range"),
    ("dynamics guidance out of range", {"dynamics_guidance": "1.5"}, None, 400, "dynamics_guidance"),
    ("downbeat guidance negative", {"downbeat_cfg": "-2"}, None, 400, "downbeat_cfg"),
]


@pytest.mark.parametrize("case,data,files,status,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_get_clear_answers_and_server_keeps_serving(client, server, case, data, files, status, needle):
    before = server.studio.history.count()
    r = client.post("/api/generate", data={**FAST, **data}, files=files)
    assert r.status_code == status, r.text
    body = r.json()
    assert needle in body["error"], body
    assert body["hint"], body  # every refusal says how to fix it
    assert "root:x" not in r.text and "Traceback" not in r.text
    assert client.get("/api/health").json()["ok"]
    assert server.studio.history.count() == before
    assert not list(server.studio.history.staging.iterdir())  # nothing left behind
    assert server.studio.queue.stats()["waiting"] == 0  # the reserved slot went back


def test_request_guards(client, server):
    form = {**FAST, "prompt": "x"}
    r = httpx.post(f"{server.url}/api/generate", data=form)  # no X-Requested-With: a cross-site form post
    assert r.status_code == 403 and "X-Requested-With" in r.json()["error"]
    r = client.post("/api/generate", data=form, headers={"Host": "evil.example"})  # DNS rebinding
    assert r.status_code == 400
    r = client.post("/api/generate", content=b"\0" * (LIMITS.max_body_bytes + 1), headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413 and "too large" in r.json()["error"]
    r = client.post("/api/generate", json={"prompt": "x"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["hint"]
    # a chunked body (no Content-Length) over a raw socket
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Requested-With: cadenza\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        assert s.recv(4096).split(b"\r\n")[0].endswith(b"411 Length Required")
    assert client.get("/api/health").json()["ok"]


@pytest.mark.parametrize("path,status", [
    ("/api/history/../../etc/passwd", 404),
    ("/api/history/%2e%2e%2f%2e%2e%2fetc%2fpasswd/audio", 404),
    ("/api/history/..%2F..%2Fhistory.sqlite3/audio", 404),
    ("/api/history/abc/audio", 404),
    ("/api/history/0123456789ab/audio", 404),
    ("/api/history/0123456789ab/..%2F..%2Fhistory.sqlite3", 404),
    ("/static/..%2F..%2Fhistory.py", 404),
    ("/api/jobs/..%2F..%2Fetc", 404),
    ("/api/history?limit=-1", 400),
    ("/api/history?limit=abc", 400),
    ("/api/jobs/zz", 400),
])
def test_files_are_served_by_id_only(client, path, status):
    r = client.get(path)
    assert r.status_code == status, r.text  # never 200, never a file
    assert r.json()["error"] and b"SQLite format" not in r.content and b"root:x" not in r.content


def test_unknown_kind_and_id_messages(client):
    gid = client.get("/api/history").json()["items"][0]["id"]
    r = client.get(f"/api/history/{gid}/secrets")
    assert r.status_code == 404 and "unknown file kind" in r.json()["error"]
    r = client.get("/api/history/zzzz/audio")
    assert r.status_code == 404 and "not a generation id" in r.json()["error"]


def test_busy_answer_past_the_queue(debug_gen, tmp_path):
    gate = threading.Event()
    gated = GatedGenerator(debug_gen, gate=gate)
    studio = Studio(StudioConfig(root=tmp_path, max_concurrent=1, queue=1), generators=[gated])
    with BackgroundServer(studio) as srv, httpx.Client(base_url=srv.url, headers=CSRF, timeout=30) as c:
        first = c.post("/api/generate", data=FAST)
        second = c.post("/api/generate", data=FAST)
        assert first.status_code == second.status_code == 202
        third = c.post("/api/generate", data=FAST)
        assert third.status_code == 503
        assert "busy" in third.json()["error"] and "try again" in third.json()["hint"]
        assert int(third.headers["retry-after"]) > 0
        assert c.get("/api/health").json()["queue"] == {"running": 1, "waiting": 1, "max_running": 1, "max_waiting": 1}
        gate.set()
        assert wait_job(c, first.json()["id"])["status"] == "done"
        assert wait_job(c, second.json()["id"])["status"] == "done"
        assert c.post("/api/generate", data=FAST).status_code == 202  # room again
    studio.close()
    assert gated.calls == 3


def test_failed_generation_is_reported_and_recorded(debug_gen, tmp_path):
    gated = GatedGenerator(debug_gen, fail=CadenzaError("the model could not run", "free some memory"))
    studio = Studio(StudioConfig(root=tmp_path), generators=[gated])
    with BackgroundServer(studio) as srv, httpx.Client(base_url=srv.url, headers=CSRF, timeout=30) as c:
        r = c.post("/api/generate", data={**FAST, "prompt": "doomed"})
        job = wait_job(c, r.json()["id"])
        assert job["status"] == "failed" and job["error"] == {"error": "the model could not run", "hint": "free some memory"}
        row = c.get(f"/api/history/{job['id']}").json()
        assert row["status"] == "failed" and "could not run" in row["error"] and "audio" not in row["urls"]
        assert c.get(f"/api/history/{job['id']}/audio").status_code == 404
        assert c.get("/api/health").json()["ok"]
    studio.close()
