"""The user's-own-audio index, the feature cache and the datasets over both corpora."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from cadenza.audio.format import SAMPLE_RATE, num_frames
from cadenza.audio.mel import LOG_MEL_MIN, MelSpectrogram
from cadenza.cli import main
from cadenza.controls.base import ControlSet
from cadenza.data.cache import build_cache
from cadenza.data.dataset import AudioClipDataset, ClipDataset
from cadenza.data.index import index_folder, read_captions
from cadenza.data.manifest import read_manifest, validate_manifest, write_manifest
from cadenza.data.stats import dataset_stats
from cadenza.errors import CadenzaError


def _music(seconds: float, f0: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A tone with clicks every half second: something to extract melody and beats from."""
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * f0 * t)
    x[(np.arange(len(t)) % (sr // 2)) < 200] += 0.5
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("songs")
    sf.write(d / "good_one.wav", _music(7.0, 440.0), SAMPLE_RATE)
    (d / "good_one.txt").write_text("a bright tone with clicks\n")
    sub = d / "sub"
    sub.mkdir()
    sf.write(sub / "good two.flac", _music(3.0, 330.0, 44100), 44100)  # resampled on load
    (d / "corrupt.wav").write_bytes(b"RIFF" + bytes(range(200)))
    (d / "empty.flac").write_bytes(b"")
    (d / "captions.csv").write_text("file,caption\nsub/good two.flac,a lower tone\nmissing.wav,nobody\n")
    return d


@pytest.fixture(scope="module")
def user_index(user_folder: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("index") / "mine"
    assert main(["data", "index", str(user_folder), "--out", str(out), "--captions", str(user_folder / "captions.csv")]) == 0
    return out


def test_index_keeps_good_files_and_reports_bad_ones(user_index: Path) -> None:
    report = json.loads((user_index / "report.json").read_text())
    assert sorted(report["indexed"]) == ["good_one.wav", "sub/good two.flac"]
    reasons = {p["file"]: p["reason"] for p in report["problems"]}
    assert set(reasons) == {"corrupt.wav", "empty.flac"}
    assert "empty" in reasons["empty.flac"] and "decode" in reasons["corrupt.wav"]
    assert report["unused_captions"] == ["missing.wav"]
    validate_manifest(user_index)
    rows = {r["file"]: r for r in read_manifest(user_index)}
    assert rows["good_one.wav"]["caption"] == "a bright tone with clicks"  # sidecar
    assert rows["sub/good two.flac"]["caption"] == "a lower tone"  # captions file
    assert rows["good_one.wav"]["n_samples"] == 6 * SAMPLE_RATE  # 7 s → one 6 s clip, 1 s tail dropped
    assert rows["sub/good two.flac"]["n_samples"] == 3 * SAMPLE_RATE  # a short file is one short clip
    for r in rows.values():
        cs = ControlSet.load(user_index / r["controls"]["extracted"])
        assert cs.n_frames == r["n_frames"] == num_frames(r["n_samples"])
        assert r["source"] == "user" and r["controls"]["score"] is None
    pcs = ControlSet.load(user_index / rows["good_one.wav"]["controls"]["extracted"]).pitch_classes()
    assert np.mean(pcs[pcs >= 0] == 9) > 0.8  # 440 Hz is A


def test_index_with_only_bad_files_is_an_error(tmp_path: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "x.wav").write_bytes(b"not audio at all")
    (d / "y.mp3").write_bytes(b"")
    sf.write(d / "quiet.wav", np.zeros(3 * SAMPLE_RATE, np.float32), SAMPLE_RATE)
    with pytest.raises(CadenzaError, match="no clips"):
        index_folder(d, tmp_path / "out")
    reasons = {p["file"]: p["reason"] for p in json.loads((tmp_path / "out" / "report.json").read_text())["problems"]}
    assert set(reasons) == {"x.wav", "y.mp3", "quiet.wav"} and "silent" in reasons["quiet.wav"]
    with pytest.raises(CadenzaError, match="not a folder"):
        index_folder(tmp_path / "nope", tmp_path / "out2")


def test_captions_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "c.csv"
    bad.write_text("name,text\na,b\n")
    with pytest.raises(CadenzaError, match="file' and 'caption"):
        read_captions(bad)
    good = tmp_path / "c.jsonl"
    good.write_text('{"file": "a.wav", "caption": "x"}\n\n{"file": "b.wav", "caption": "y"}\n')
    assert read_captions(good) == {"a.wav": "x", "b.wav": "y"}


def test_cache_and_datasets_on_the_rendered_corpus(tiny_corpus: Path) -> None:
    assert main(["data", "cache", str(tiny_corpus), "--shard-size", "3"]) == 0
    rows = read_manifest(tiny_corpus, "train")
    ds = ClipDataset(tiny_corpus, "train", frames=128)
    assert len(ds) == len(rows)
    item = ds[0]
    assert item["mel"].shape == (128, 128) and item["melody"].shape == (128, 12)
    assert item["rhythm"].shape == (128, 2) and item["valid"].sum() == 128
    assert item["caption"] in next(r["captions"] for r in rows if r["id"] == item["id"])
    # the cached mel is the canonical mel of the clip, and controls are the exact score ones
    full = ClipDataset(tiny_corpus, "train", frames=None, random_crop=False, random_caption=False)
    first = full[0]
    row = next(r for r in rows if r["id"] == first["id"])
    audio, _ = sf.read(str(tiny_corpus / row["path"]), dtype="float32")
    ref = MelSpectrogram()(torch.from_numpy(audio))
    assert torch.allclose(first["mel"], ref, atol=0.02)
    cs = ControlSet.load(tiny_corpus / row["controls"]["score"])
    assert torch.equal(first["melody"], torch.from_numpy(cs.melody))
    assert torch.allclose(first["dynamics"], torch.from_numpy(cs.dynamics))
    assert first["caption"] == row["caption"]
    # two DataLoader workers
    loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=True)
    batch = next(iter(loader))
    assert batch["mel"].shape == (4, 128, 128) and batch["melody_mask"].shape == (4, 128)
    assert len(batch["caption"]) == 4
    # the vocoder's raw-audio dataset: mel computed on the fly or sliced from the cache agree
    a = AudioClipDataset(tiny_corpus, "train", segment=8192, random_crop=False)
    b = AudioClipDataset(tiny_corpus, "train", segment=8192, mel_source="cache", random_crop=False)
    x, y = a[0], b[0]
    assert x["audio"].shape == (8192,) and x["mel"].shape == y["mel"].shape == (128, 33)
    assert torch.allclose(x["mel"][:, 3:-3], y["mel"][:, 3:-3], atol=0.02)  # edges differ by padding only
    batch = next(iter(DataLoader(a, batch_size=2, num_workers=2)))
    assert batch["audio"].shape == (2, 8192)


def test_cache_on_user_audio_pads_short_clips(user_index: Path) -> None:
    build_cache(user_index, controls="extracted")
    rows = read_manifest(user_index)
    by_split: dict[str, list[dict]] = {}
    for r in rows:
        by_split.setdefault(r["split"], []).append(r)
    short = next(r for r in rows if r["n_samples"] < 6 * SAMPLE_RATE)
    ds = ClipDataset(user_index, short["split"], frames=600, controls="extracted", random_crop=False)
    item = ds[ds.ids.index(short["id"])]
    n = short["n_frames"]
    assert item["mel"].shape == (128, 600)
    assert item["valid"][:n].all() and not item["valid"][n:].any()
    assert (item["mel"][:, n:] == LOG_MEL_MIN).all() and not item["dynamics_mask"][n:].any()


def test_stale_cache_and_missing_cache_are_explained(user_index: Path, tmp_path: Path) -> None:
    with pytest.raises(CadenzaError, match="no feature cache"):
        ClipDataset(tmp_path, "train")
    build_cache(user_index, controls="extracted")
    rows = read_manifest(user_index)
    write_manifest(user_index, rows[:1])
    try:
        with pytest.raises(CadenzaError, match="older than the manifest"):
            ClipDataset(user_index, rows[0]["split"], controls="extracted")
    finally:
        write_manifest(user_index, rows)
    with pytest.raises(CadenzaError, match="unknown split"):
        ClipDataset(user_index, "dev", controls="extracted")


def test_stats_write_summary_and_plots(tiny_corpus: Path, tmp_path: Path) -> None:
    summary = dataset_stats(tiny_corpus, tmp_path / "stats")
    rows = read_manifest(tiny_corpus)
    assert summary["clips"] == len(rows)
    assert abs(summary["hours"] - len(rows) * 6 / 3600) < 1e-3
    assert sum(v["clips"] for v in summary["splits"].values()) == len(rows)
    for name in ("summary.json", "summary.md", "instruments.png", "tempo.png"):
        assert (tmp_path / "stats" / name).stat().st_size > 0
