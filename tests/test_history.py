"""The SQLite generation history: rows only for complete generations, crash safety, re-runs, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch

from cadenza.checkpoint import save_model_folder
from cadenza.cli import main
from cadenza.config import load_config
from cadenza.errors import CadenzaError
from cadenza.generators import build_generator
from cadenza.history import History, check_id, new_id

FAST = {"duration": "1", "steps": "2"}


@pytest.fixture(scope="module")
def debug_gen(tmp_path_factory):
    """The debug generator with random weights, loaded once for the module."""
    from cadenza.pipeline import Cadenza

    cfg = load_config("generator", "debug")
    torch.manual_seed(0)
    net = build_generator(cfg)
    with torch.no_grad():
        for conv in [*net.adapter.zero_skips, net.adapter.zero_mid, net.adapter.controls.zero_conv, net.base.decoder.conv_out]:
            torch.nn.init.normal_(conv.weight, std=0.05)
    folder = tmp_path_factory.mktemp("history_model")
    save_model_folder(folder, net.state_dict(), cfg)
    return Cadenza.load(folder)


@pytest.fixture
def studio(debug_gen, tmp_path):
    from cadenza.app import Studio, StudioConfig

    s = Studio(StudioConfig(root=tmp_path / "studio"), generators=[debug_gen])
    yield s
    s.close()


def _stage_files(history: History, gid: str) -> None:
    stage = history.stage(gid)
    sf.write(stage / "audio.wav", np.zeros(100, np.float32), 22050)
    (stage / "request.json").write_text("{}")


def _commit(history: History, gid: str, **kw):
    args = dict(prompt="p", seed=1, duration_s=1.0, model_id="m@1", request={"prompt": "p"}, files={"audio": "audio.wav"}, info={"timings": {}})
    return history.commit(gid, **{**args, **kw})


def test_commit_list_get(tmp_path):
    h = History(tmp_path)
    ids = []
    for i in range(3):
        gid = new_id()
        _stage_files(h, gid)
        _commit(h, gid, prompt=f"p{i}", seed=i)
        ids.append(gid)
    assert len(h) == 3 and [g.id for g in h.list()] == ids[::-1]  # newest first
    g = h.get(ids[0])
    assert g.prompt == "p0" and g.seed == 0 and g.status == "done" and g.request == {"prompt": "p"}
    assert g.path("audio") == (tmp_path / "generations" / ids[0] / "audio.wav").resolve()
    assert not (tmp_path / "staging" / ids[0]).exists()
    assert [g.id for g in h.list(limit=1, offset=1)] == [ids[1]]
    with pytest.raises(CadenzaError, match="no generation"):
        h.get("0" * 12)


def test_commit_refuses_missing_or_escaping_files(tmp_path):
    h = History(tmp_path)
    gid = new_id()
    _stage_files(h, gid)
    with pytest.raises(CadenzaError, match="missing or outside"):
        _commit(h, gid, files={"audio": "audio.wav", "plot": "plot.png"})
    with pytest.raises(CadenzaError, match="missing or outside"):
        _commit(h, gid, files={"audio": "../history.sqlite3"})
    assert len(h) == 0 and not (tmp_path / "generations" / gid).exists()


def test_ids_never_act_as_paths(tmp_path):
    for bad in ("../../etc/passwd", "..", "", "ABCDEF012345", "0123456789abc", "0123456789a/"):
        with pytest.raises(CadenzaError, match="not a generation id"):
            check_id(bad)
    h = History(tmp_path)
    gid = new_id()
    _stage_files(h, gid)
    g = _commit(h, gid)
    g.files["audio"] = "../../history.sqlite3"  # even a tampered record cannot reach outside its folder
    with pytest.raises(CadenzaError, match="missing"):
        g.path("audio")


def test_failed_insert_leaves_neither_row_nor_folder(tmp_path, monkeypatch):
    h = History(tmp_path)
    gid = new_id()
    _stage_files(h, gid)
    real = h._connect
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        conn = real()
        conn.execute("CREATE TEMP TRIGGER boom BEFORE INSERT ON generations BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        return conn

    monkeypatch.setattr(h, "_connect", flaky)
    with pytest.raises(Exception, match="disk full"):
        _commit(h, gid)
    monkeypatch.setattr(h, "_connect", real)
    assert len(h) == 0 and not (tmp_path / "generations" / gid).exists() and calls["n"] == 1


def test_killed_between_files_and_row_leaves_no_row(tmp_path):
    """A process SIGKILLed after its audio is in place but before the row: no row, and the folder is swept."""
    script = textwrap.dedent(f"""
        import os, signal
        import numpy as np, soundfile as sf
        import cadenza.history as hist
        h = hist.History({str(tmp_path)!r})
        stage = h.stage("aaaaaaaaaaaa")
        sf.write(stage / "audio.wav", np.zeros(256, np.float32), 22050)
        real_replace = os.replace
        def replace_then_die(src, dst):
            real_replace(src, dst)
            os.kill(os.getpid(), signal.SIGKILL)
        hist.os.replace = replace_then_die
        h.commit("aaaaaaaaaaaa", prompt="p", seed=0, duration_s=1.0, model_id="m", request={{}}, files={{"audio": "audio.wav"}}, info={{}})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    assert (tmp_path / "generations" / "aaaaaaaaaaaa" / "audio.wav").exists()  # the crash happened in between
    h = History(tmp_path)  # reopening sweeps the orphan
    assert len(h) == 0 and not (tmp_path / "generations" / "aaaaaaaaaaaa").exists()


def test_generation_adds_a_complete_row(studio):
    job = studio.submit({**FAST, "prompt": "calm piano", "seed": "5", "melody_mode": "notes", "melody_notes": "E4:2", "rhythm_mode": "bpm"})
    job = studio.queue.wait(job.id)
    assert job.status == "done", job.error
    (g,) = studio.history.list()
    assert g.id == job.id and g.status == "done" and g.prompt == "calm piano" and g.seed == 5
    assert g.model_id == studio.model_id and g.request["melody"]["notes"] == "E4:2"
    assert g.info["timings"]["total_s"] > 0 and set(g.info["adherence"]) >= {"melody_acc", "dynamics_r", "beat_f1"}
    for kind in ("audio", "plot", "controls_zip", "controls_npz", "request"):
        assert g.path(kind).stat().st_size > 0
    assert json.loads(g.path("request").read_text())["seed"] == 5
    assert sf.info(str(g.path("audio"))).frames == 22050


@pytest.mark.parametrize("where", ["generate", "plot"])
def test_crash_mid_generation_leaves_no_row(studio, monkeypatch, where):
    """An unexpected exception inside the generator, or after the audio is written: no row, no files."""
    import cadenza.app.figure as figure

    class Crash(RuntimeError):
        pass

    def boom(*a, **k):
        raise Crash("simulated crash")

    gen = studio._pool.get()
    studio._pool.put(gen)
    if where == "generate":
        monkeypatch.setattr(gen, "run", boom)  # the studio's one call into the pipeline
    else:  # the audio is already saved in staging when the figure fails
        monkeypatch.setattr(figure, "plot_overlay", boom)
    job = studio.queue.wait(studio.submit({**FAST, "prompt": "doomed"}).id)
    assert job.status == "failed" and "internal error" in job.error["error"]
    assert len(studio.history) == 0
    assert not list(studio.history.generations.iterdir()) and not list(studio.history.staging.iterdir())


def test_rerun_reproduces_the_audio(studio):
    first = studio.queue.wait(studio.submit({**FAST, "prompt": "folk", "seed": "42", "dynamics_mode": "shape", "dynamics_shape": "crescendo", "melody_mode": "notes", "melody_notes": "A4:1 C5:1"}).id)
    again = studio.queue.wait(studio.rerun(first.id).id)
    assert again.status == "done", again.error
    a, b = first.result, again.result
    assert b.rerun_of == a.id and b.seed == 42 and b.request == a.request
    wa, _ = sf.read(a.path("audio"))
    wb, _ = sf.read(b.path("audio"))
    assert np.array_equal(wa, wb) and np.abs(wa).max() > 0
    other = studio.queue.wait(studio.submit({**FAST, "prompt": "folk", "seed": "43", "dynamics_mode": "shape", "dynamics_shape": "crescendo", "melody_mode": "notes", "melody_notes": "A4:1 C5:1"}).id)
    assert not np.array_equal(wa, sf.read(other.result.path("audio"))[0])  # the seed matters, so equality above means something


def test_blank_seed_is_drawn_and_stored(studio):
    job = studio.queue.wait(studio.submit({**FAST, "seed": ""}).id)
    again = studio.queue.wait(studio.rerun(job.id).id)
    assert job.result.seed == again.result.seed
    assert np.array_equal(sf.read(job.result.path("audio"))[0], sf.read(again.result.path("audio"))[0])


def test_cli_history_list(studio, capsys):
    studio.queue.wait(studio.submit({**FAST, "prompt": "cli check", "seed": "9"}).id)
    assert main(["history", "list", "--root", str(studio.history.root), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1 and rows[0]["prompt"] == "cli check" and rows[0]["seed"] == 9
    assert main(["history", "list", "--root", str(studio.history.root)]) == 0
    assert "cli check" in capsys.readouterr().out
    assert main(["history", "list", "--root", str(studio.history.root / "nope")]) == 2
    assert "no studio history" in " ".join(capsys.readouterr().err.split())  # rich wraps long lines


def test_root_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(CadenzaError, match="not a folder"):
        History(tmp_path / "f")
    assert os.path.isfile(tmp_path / "f")


def test_one_studio_per_root(debug_gen, tmp_path):
    from cadenza.app import Studio, StudioConfig

    first = Studio(StudioConfig(root=tmp_path), generators=[debug_gen])
    with pytest.raises(CadenzaError, match="already serving this folder"):
        Studio(StudioConfig(root=tmp_path), generators=[debug_gen])
    first.close()
    Studio(StudioConfig(root=tmp_path), generators=[debug_gen]).close()  # free again once the first has stopped
