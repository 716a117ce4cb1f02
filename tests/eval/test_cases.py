"""Case sets for ``cadenza eval``: extracted (from a held-out corpus split) and created controls."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cadenza.audio.format import FRAME_RATE, SAMPLE_RATE
from cadenza.cli import main
from cadenza.errors import CadenzaError
from cadenza.eval.cases import CASES_NAME, MAJOR_STEPS, MINOR_STEPS, load_cases, make_corpus_cases, make_created_cases


def synth_clip(seconds: float, bpm: float, midi: list[int], seed: int) -> np.ndarray:
    """A plucked-tone melody (one note per beat) over a soft noise bed: voiced, beaty, varying loudness."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    beat = 60.0 / bpm
    idx = np.minimum((t // beat).astype(int), len(midi) - 1)
    freq = 440.0 * 2 ** ((np.asarray(midi)[idx] - 69) / 12)
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE
    env = np.exp(-3.0 * (t % beat)) * np.linspace(0.4, 1.0, n)
    rng = np.random.default_rng(seed)
    return (0.3 * env * np.sin(phase) + 0.003 * rng.standard_normal(n)).astype(np.float32)


def fake_corpus(folder: Path, n_test: int = 2, seconds: float = 2.0) -> Path:
    """A corpus folder with a manifest of ``n_test`` test clips and one train clip (synthesised audio)."""
    rows = []
    for i in range(n_test + 1):
        split = "train" if i == n_test else "test"
        rel = f"clips/clip{i}.flac"
        (folder / "clips").mkdir(parents=True, exist_ok=True)
        sf.write(folder / rel, synth_clip(seconds, 120.0, [60 + 2 * i, 64, 67, 72, 67], i), SAMPLE_RATE)
        rows.append({
            "id": f"clip{i}", "path": rel, "duration": seconds, "n_samples": int(seconds * SAMPLE_RATE),
            "n_frames": int(seconds * SAMPLE_RATE) // 256 + 1, "caption": f"a bright plucked tune number {i}", "captions": [],
            "tags": [], "source": "synth", "work": f"w{i}", "split": split, "bpm": 120.0, "meter": "4/4", "key": "C major",
            "programs": [0], "controls": {},
        })
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _arrays(folder: Path) -> list[dict[str, np.ndarray]]:
    return [{k: v for k, v in c.load_controls(folder).as_arrays().items()} for c in load_cases(folder)]


def test_created_cases_valid_and_deterministic(tmp_path):
    a = make_created_cases(tmp_path / "a", n=4, seed=3, duration=4.0)
    make_created_cases(tmp_path / "b", n=4, seed=3, duration=4.0)
    make_created_cases(tmp_path / "c", n=4, seed=4, duration=4.0)
    assert (tmp_path / "a" / CASES_NAME).read_text() == (tmp_path / "b" / CASES_NAME).read_text()
    for x, y in zip(_arrays(tmp_path / "a"), _arrays(tmp_path / "b")):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert (tmp_path / "a" / CASES_NAME).read_text() != (tmp_path / "c" / CASES_NAME).read_text()

    loaded = load_cases(tmp_path / "a")
    assert [c.id for c in loaded] == sorted(c.id for c in a)
    assert sum(c.span is not None for c in loaded) == 2  # every second case is partial (Table III)
    for case in loaded:
        cs = case.load_controls(tmp_path / "a")
        recipe = json.loads((tmp_path / "a" / case.controls / "recipe.json").read_text())
        assert case.kind == "created" and case.reference is None and set(cs.given()) == {"melody", "dynamics", "rhythm"}
        assert (tmp_path / "a" / case.controls / "melody.csv").is_file()
        # melody: diatonic in some major or minor key
        pcs = set(cs.pitch_classes()[cs.pitch_classes() >= 0].tolist())
        assert any(pcs <= {(tonic + s) % 12 for s in steps} for tonic in range(12) for steps in (MAJOR_STEPS, MINOR_STEPS))
        # dynamics: the curve spans 6-15 dB in its mask
        d = cs.dynamics[cs.dynamics_mask > 0]
        assert 6.0 - 0.05 <= d.max() - d.min() <= 15.0 + 0.05 and recipe["curve"] in ("linear", "tanh", "cosine")
        # rhythm: a template stretched 0.8-1.2x
        assert 0.8 <= recipe["stretch"] <= 1.2
        beats = cs.beat_times()
        if len(beats) > 1:
            assert np.median(np.diff(beats)) == pytest.approx(60.0 / recipe["bpm"], abs=1.5 / FRAME_RATE)
        if case.span is not None:
            t = np.arange(cs.n_frames) / FRAME_RATE
            outside = (t < case.span[0] - 1.5 / FRAME_RATE) | (t > case.span[1] + 1.5 / FRAME_RATE)
            for name in ("melody", "dynamics", "rhythm"):
                mask = getattr(cs, f"{name}_mask")
                assert mask[outside].sum() == 0 and 0 < mask.mean() < 0.75


def test_corpus_cases_from_held_out_split(tmp_path):
    corpus = fake_corpus(tmp_path / "corpus", n_test=2)
    cases = make_corpus_cases(corpus, tmp_path / "cases", split="test", n=5, seed=0, duration=1.5)
    assert [c.id for c in cases] == ["x-clip0", "x-clip1"]  # only the test split; n capped at its size
    again = make_corpus_cases(corpus, tmp_path / "again", split="test", n=5, seed=0, duration=1.5)
    assert [c.to_row() for c in cases] == [c.to_row() for c in again]
    for case in load_cases(tmp_path / "cases"):
        ref = case.load_reference(tmp_path / "cases")
        cs = case.load_controls(tmp_path / "cases")
        assert case.kind == "extracted" and case.prompt.startswith("a bright plucked tune")
        assert ref.shape == (int(1.5 * SAMPLE_RATE),) and cs.n_frames == int(1.5 * SAMPLE_RATE) // 256 + 1
        assert cs.melody_mask.all() and cs.pitch_classes().max() >= 0 and len(cs.beats) >= 1


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(CadenzaError, match="no cases.jsonl"):
        load_cases(tmp_path)
    with pytest.raises(CadenzaError, match="--n must be at least 1"):
        make_created_cases(tmp_path / "x", n=0)
    corpus = fake_corpus(tmp_path / "corpus", n_test=1, seconds=1.0)
    with pytest.raises(CadenzaError, match="split 'valid' has no clips"):
        make_corpus_cases(corpus, tmp_path / "y", split="valid")
    make_created_cases(tmp_path / "z", n=1, duration=2.0)
    (tmp_path / "z" / CASES_NAME).write_text((tmp_path / "z" / CASES_NAME).read_text().replace('"created"', '"invented"'))
    with pytest.raises(CadenzaError, match="unknown case kind 'invented'"):
        load_cases(tmp_path / "z")
    assert main(["eval", "make-cases", "--out", str(tmp_path / "w")]) == 2
    assert "exactly one of --from-corpus" in capsys.readouterr().err
