"""End-to-end: a very small rendered corpus validates, agrees in length and resumes identically."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cadenza.audio.format import SAMPLE_RATE, num_frames
from cadenza.controls.base import ControlSet
from cadenza.data.build import BuildConfig, build
from cadenza.data.manifest import read_manifest, validate_manifest
from cadenza.errors import CadenzaError


def test_manifest_validates_and_every_clip_agrees(tiny_corpus: Path) -> None:
    counts = validate_manifest(tiny_corpus, check_files=True)
    rows = read_manifest(tiny_corpus)
    assert sum(counts.values()) == len(rows) > 0
    assert len({r["work"] for r in rows}) >= 2
    for r in rows:
        info = sf.info(str(tiny_corpus / r["path"]))
        assert info.samplerate == SAMPLE_RATE and info.channels == 1
        assert info.frames == r["n_samples"] == int(round(6.0 * SAMPLE_RATE))
        assert r["n_frames"] == num_frames(info.frames)
        assert r["caption"] == r["captions"][0] and len(r["captions"]) >= 3
        assert r["key"] in r["caption"] and str(int(round(r["bpm"]))) in r["caption"]
        score = ControlSet.load(tiny_corpus / r["controls"]["score"])
        extracted = ControlSet.load(tiny_corpus / r["controls"]["extracted"])
        assert score.n_frames == extracted.n_frames == r["n_frames"]
        # exact controls: melody on voiced frames, beats on the grid, dynamics from the audio
        assert set(score.given()) == {"melody", "dynamics", "rhythm"}
        assert score.melody_mask.mean() > 0.25
        ibi = np.diff(score.beat_times())
        assert len(ibi) >= 2 and np.allclose(ibi, 60.0 / r["bpm"], atol=0.02)
        np.testing.assert_allclose(score.dynamics, extracted.dynamics)


def test_splits_share_no_work(tiny_corpus: Path) -> None:
    splits: dict[str, set[str]] = {}
    for r in read_manifest(tiny_corpus):
        splits.setdefault(r["work"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits.values())
    # the tiny preset puts a valid and a test work first, so even 3 works give every split
    assert set().union(*splits.values()) == {"train", "valid", "test"}


def test_interrupted_build_resumes_to_identical_manifest(tiny_corpus: Path, tiny_builder, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(tiny_corpus, out)
    original = (tiny_corpus / "manifest.jsonl").read_bytes()
    rows = read_manifest(out)
    victim = rows[0]
    # simulate a kill: no manifest, one work's record and one clip gone, a half-written temp file left
    (out / "manifest.jsonl").unlink()
    work_json = next(p for p in (out / "works").glob("*.json") if json.loads(p.read_text())["work"] == victim["work"])
    work_json.unlink()
    (out / victim["path"]).unlink()
    stray = out / Path(victim["path"]).parent / f".{Path(victim['path']).name}.abc.tmp.flac"
    stray.write_bytes(b"partial")
    untouched = next(r for r in rows if r["work"] != victim["work"])
    mtime = (out / untouched["path"]).stat().st_mtime_ns
    assert tiny_builder(out) == 0
    assert (out / "manifest.jsonl").read_bytes() == original
    assert not stray.exists()
    assert (out / untouched["path"]).stat().st_mtime_ns == mtime  # finished works are not redone


def test_resume_with_other_options_is_refused(tiny_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(tiny_corpus, out)
    cfg = BuildConfig(out=str(out), preset="tiny", seed=1, workers=1, limit_works=3, max_clips=2)
    with pytest.raises(CadenzaError, match="other options"):
        build(cfg)


def test_failing_work_is_recorded_and_the_rest_carry_on(tmp_path: Path, monkeypatch) -> None:
    import cadenza.data.build as build_mod

    real = build_mod.load_work
    calls = {"n": 0}

    def flaky(ref):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("cannot convert this score")
        return real(ref)

    monkeypatch.setattr(build_mod, "load_work", flaky)
    cfg = BuildConfig(out=str(tmp_path / "c"), preset="tiny", workers=1, limit_works=2, max_clips=1, extract=False)
    summary = build(cfg)
    failures = json.loads((tmp_path / "c" / "failures.json").read_text())
    assert summary["failed"] == 1 and len(failures) == 1
    assert "cannot convert this score" in failures[0]["reason"]
    assert summary["clips"] >= 1
    rows = read_manifest(tmp_path / "c")
    assert all(r["controls"]["extracted"] is None for r in rows)


def test_bad_options_are_cadenza_errors(tmp_path: Path) -> None:
    with pytest.raises(CadenzaError, match="preset"):
        build(BuildConfig(out=str(tmp_path / "x"), preset="huge"))
    with pytest.raises(CadenzaError, match="clip-seconds"):
        build(BuildConfig(out=str(tmp_path / "x"), clip_seconds=0.1))


def test_killed_build_process_resumes_to_identical_manifest(tiny_corpus: Path, tiny_builder, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "cadenza", "data", "build", "--preset", "tiny", "--out", str(out), "--workers", "1",
           "--limit-works", "3", "--max-clips", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list((out / "works").glob("*.json")) and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert not (out / "manifest.jsonl").exists() or proc.returncode == 0
    assert tiny_builder(out) == 0
    assert (out / "manifest.jsonl").read_bytes() == (tiny_corpus / "manifest.jsonl").read_bytes()
    assert not [p for p in out.rglob(".*.tmp*")]


def test_splits_option_builds_the_same_clips_of_fewer_works(tiny_corpus: Path, tiny_builder, tmp_path: Path, capsys) -> None:
    """--splits keeps only the selected works in those splits, with clips identical to the whole
    build's (a held-out set cut from a bigger preset); an empty selection or a bad name is a clear error."""
    whole = read_manifest(tiny_corpus)
    out = tmp_path / "held-out"
    assert tiny_builder(out, "--splits", "valid,test") == 0
    assert read_manifest(out) == [r for r in whole if r["split"] in ("valid", "test")]
    assert json.loads((out / "build.json").read_text())["splits"] == ["valid", "test"]
    assert {r["split"] for r in read_manifest(out)} == {"valid", "test"}
    assert tiny_builder(tmp_path / "none", "--limit-works", "1", "--splits", "test") == 2  # its one work is valid
    assert "none of the 1 selected works" in " ".join(capsys.readouterr().err.split())
    assert tiny_builder(tmp_path / "bad", "--splits", "holdout") == 2
    assert "--splits" in capsys.readouterr().err


def test_works_without_clips_are_listed_with_the_reason(tiny_builder, tmp_path: Path, capsys) -> None:
    """A work that converts but gives no clip (here: shorter than a 20 s clip) is not silently
    missing from the manifest: build.json lists it with why, and the summary line says so."""
    out = tmp_path / "long-clips"
    assert tiny_builder(out, "--clip-seconds", "20") == 0
    empty = json.loads((out / "build.json").read_text())["works_without_clips"]
    in_manifest = {r["work"] for r in read_manifest(out)}
    assert empty and all(e["skipped"] and set(e["skipped"]) <= {"short", "silent", "unvoiced"} for e in empty)
    assert not in_manifest & {e["work"] for e in empty} and len(in_manifest) + len(empty) == 5
    assert f"{len(empty)} work(s) gave no clip" in " ".join(capsys.readouterr().err.split())  # the console is stderr
