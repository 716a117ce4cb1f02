"""The trained beat tracker: shipped weights, click tracks, the post-filter, fallbacks, training."""

from __future__ import annotations

import json
import warnings

import mir_eval
import numpy as np
import pytest
import torch

from cadenza.audio import FRAME_RATE, SAMPLE_RATE, num_frames, save_audio
from cadenza.config import load_config
from cadenza.controls import ControlSet
from cadenza.controls import beat_tracker as bt
from cadenza.controls.beat_tracker import (
    BeatTCN,
    NeuralBeatTracker,
    activations_to_beats,
    choose_downbeats,
    estimate_beat_grid,
    load_beat_tracker,
    shipped_weights_available,
)
from cadenza.controls.base import beats_to_activations
from cadenza.controls.extract import extract_controls
from cadenza.controls.rhythm import DSPBeatTracker, get_rhythm_tracker
from cadenza.errors import CadenzaError
from cadenza.train.beats import BeatBatches, BeatModule, beat_loss, f_measure, ship, synth_clicks
from cadenza.train.runner import fit_folder

SR = SAMPLE_RATE


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small convolutions: one thread is fastest, and two spin-wait badly on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def click_track(bpm: float = 120.0, meter: int = 4, bars: int = 3, lead: float = 0.3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clicks with louder, higher downbeats; returns audio, beat times, downbeat times."""
    period = 60.0 / bpm
    times = lead + np.arange(bars * meter) * period
    audio = np.zeros(int((times[-1] + 0.5) * SR), np.float32)
    n = int(0.03 * SR)
    env = np.exp(-np.arange(n) / (0.004 * SR))
    for i, t in enumerate(times):
        down = i % meter == 0
        s = int(round(t * SR))
        audio[s : s + n] += (0.9 if down else 0.3) * env * np.sin(2 * np.pi * (1500 if down else 1000) * np.arange(n) / SR)
    return audio, times, times[::meter]


def ideal_activations(n_frames: int, period: float, first: float, meter: int, down_phase: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Activations as the training targets make them, for a grid of beats; returns (act, beats)."""
    frames = first + period * np.arange(int((n_frames - first) / period) + 1)
    frames = frames[frames <= n_frames - 1]
    beats = np.stack([frames / FRAME_RATE, (np.arange(frames.size) % meter == down_phase).astype(float)], axis=1)
    return beats_to_activations(beats, n_frames).astype(np.float64), beats


# ---------------------------------------------------------------------------------------------- shipped model
@pytest.fixture(scope="module")
def shipped() -> NeuralBeatTracker:
    assert shipped_weights_available(), "cadenza/weights/beats must hold model.safetensors + config.json"
    return load_beat_tracker()


def test_shipped_tracker_loads_small_and_is_the_default(shipped: NeuralBeatTracker) -> None:
    assert isinstance(shipped.model, BeatTCN)
    assert (bt.WEIGHTS_DIR / "model.safetensors").stat().st_size < 2_000_000
    assert shipped.model.receptive_field() > 4 * FRAME_RATE  # sees more than a bar of 4/4 at 60 BPM
    assert isinstance(get_rhythm_tracker(), NeuralBeatTracker)
    assert isinstance(get_rhythm_tracker("neural"), NeuralBeatTracker)
    assert isinstance(get_rhythm_tracker("dsp"), DSPBeatTracker)


def test_click_track_at_120_bpm_in_four_four(shipped: NeuralBeatTracker) -> None:
    audio, beats, downbeats = click_track(120.0, meter=4, bars=3)
    out = shipped.track(audio, SR)
    assert f_measure(beats, out[:, 0]) >= 0.9
    assert f_measure(downbeats, out[out[:, 1] > 0.5, 0]) >= 0.7


def test_output_shapes_and_ranges(shipped: NeuralBeatTracker) -> None:
    audio, _, _ = click_track(100.0, meter=3, bars=2)
    act = shipped.activations(audio, SR)
    assert act.shape == (num_frames(audio.size), 2) and (act >= 0).all() and (act <= 1).all()
    out = shipped.track(audio, SR)
    assert out.ndim == 2 and out.shape[1] == 2 and len(out) > 0
    assert np.all(np.diff(out[:, 0]) > 0) and set(np.unique(out[:, 1])) <= {0.0, 1.0}
    assert (out[:, 0] >= 0).all() and (out[:, 0] <= audio.size / SR).all()
    # batched activations equal one-by-one ones; a 44.1 kHz copy gives the same beats
    mel = shipped.mel(torch.from_numpy(np.stack([audio, audio[::-1].copy()])))
    np.testing.assert_allclose(shipped.activations_from_mel(mel)[0], act, atol=1e-5)
    from cadenza.audio import resample

    hi = shipped.track(resample(audio, SR, 44100), 44100)
    assert f_measure(out[:, 0], hi[:, 0]) >= 0.9


def test_silence_and_tiny_clips_give_no_beats(shipped: NeuralBeatTracker) -> None:
    assert shipped.track(np.zeros(SR * 2, np.float32), SR).shape == (0, 2)
    assert shipped.track(np.full(300, 0.1, np.float32), SR).shape == (0, 2)
    with pytest.raises(CadenzaError, match="mono"):
        shipped.track(np.zeros((2, SR), np.float32), SR)


def test_extract_controls_uses_the_trained_tracker_by_default(shipped: NeuralBeatTracker) -> None:
    audio, beats, _ = click_track(120.0, meter=4, bars=3)
    cs = extract_controls(audio, controls="rhythm")
    np.testing.assert_allclose(cs.beats, shipped.track(audio, SR))
    frames = np.rint(cs.beat_times() * FRAME_RATE).astype(int)
    assert (cs.rhythm[frames, 0] == 1).all()


# ---------------------------------------------------------------------------------------------- post-filter
@pytest.mark.parametrize("bpm,meter,phase", [(120.0, 4, 0), (75.0, 3, 1), (160.0, 2, 1), (95.0, 1, 0)])
def test_post_filter_recovers_a_clean_grid(bpm: float, meter: int, phase: int) -> None:
    period = FRAME_RATE * 60 / bpm
    act, beats = ideal_activations(517, period, first=7.3, meter=meter, down_phase=phase)
    out = activations_to_beats(act)
    assert f_measure(beats[:, 0], out[:, 0]) == 1.0  # the first beat too, right at the start
    assert f_measure(beats[beats[:, 1] > 0, 0], out[out[:, 1] > 0, 0]) == 1.0
    p, _, corr = estimate_beat_grid(act[:, 0])
    assert abs(p / period - 1) < 0.02 and corr > 0.5  # not double or half the period


def test_post_filter_follows_a_gradual_tempo_change() -> None:
    # 100 → 130 BPM over 12 s: the DP lets each beat move off the global period
    t, times = 0.2, []
    while t < 11.8:
        times.append(t)
        t += 60 / (100 + 30 * t / 12)
    beats = np.stack([times, np.zeros(len(times))], axis=1)
    act = beats_to_activations(beats, num_frames(12 * SR)).astype(np.float64)
    out = activations_to_beats(act)
    assert f_measure(beats[:, 0], out[:, 0]) >= 0.95


def test_choose_downbeats_by_likelihood() -> None:
    d = np.array([0.1, 0.9, 0.1, 0.05, 0.1, 0.8, 0.1, 0.1, 0.2])
    np.testing.assert_array_equal(choose_downbeats(d), [0, 1, 0, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(choose_downbeats(np.full(4, 0.95)), [1, 1, 1, 1])  # one beat per bar
    assert choose_downbeats(np.zeros(0)).shape == (0,)


def test_undecided_downbeats_do_not_mark_every_beat() -> None:
    """Every beat at 0.6: bars of 2 (F1 2/3 against a 4-beat truth, 1 against a 2-beat one), not
    one-beat bars (1/2 and 2/3). Bars of one beat are rare, and the shipped prior says so."""
    flags = choose_downbeats(np.full(8, 0.6))
    np.testing.assert_array_equal(flags, [1, 0, 1, 0, 1, 0, 1, 0])
    assert choose_downbeats(np.full(8, 0.6), {"meter_log_prior": [0.0, -0.5, -0.5, -2.0]}).all()  # the old prior


def test_post_filter_rejects_flat_and_bad_activations() -> None:
    assert activations_to_beats(np.full((300, 2), 0.05)).shape == (0, 2)
    with pytest.raises(CadenzaError, match="shape"):
        activations_to_beats(np.zeros((300, 3)))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("frames", [1, 2, 37, 64])
def test_network_keeps_the_frame_grid(stride: int, frames: int) -> None:
    model = BeatTCN({"channels": 4, "kernel": 3, "dilations": [1, 2], "stride": stride}).eval()
    assert model(torch.randn(2, 128, frames) - 5).shape == (2, 2, frames)
    # non-causal but local: a change at the last frame does not reach beyond the receptive field
    x = torch.randn(1, 128, 64) - 5
    y = x.clone()
    y[..., -1] += 3
    moved = (model(x) - model(y)).abs().amax(dim=1)[0] > 1e-6
    assert not moved[: 64 - model.receptive_field()].any()
    with pytest.raises(CadenzaError, match="log-mel of shape"):
        model(torch.zeros(1, 64, 10))


# ---------------------------------------------------------------------------------------------- files and fallback
def _tiny_tracker() -> NeuralBeatTracker:
    torch.manual_seed(0)
    return NeuralBeatTracker(BeatTCN({"channels": 4, "kernel": 3, "dilations": [1, 2]}))


def test_save_load_round_trip(tmp_path) -> None:
    tracker = _tiny_tracker()
    tracker.save(tmp_path / "m")
    again = NeuralBeatTracker.load(tmp_path / "m")
    audio, _, _ = click_track(bars=1)
    np.testing.assert_allclose(again.activations(audio, SR), tracker.activations(audio, SR), atol=1e-6)


def test_missing_or_corrupt_weights_raise_cadenza_error(tmp_path) -> None:
    with pytest.raises(CadenzaError, match="no such model folder"):
        NeuralBeatTracker.load(tmp_path / "nothing")
    folder = _tiny_tracker().save(tmp_path / "m")
    (folder / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(CadenzaError, match="corrupt"):
        NeuralBeatTracker.load(folder)
    folder = _tiny_tracker().save(tmp_path / "k")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "kind": "vocoder"}))
    with pytest.raises(CadenzaError, match="not a beat tracker"):
        NeuralBeatTracker.load(folder)
    (folder / "config.json").write_text(json.dumps({**config, "model": {**config["model"], "channels": 6}}))
    with pytest.raises(CadenzaError, match="do not fit|do not match"):
        NeuralBeatTracker.load(folder)


def test_default_falls_back_to_dsp_with_a_warning(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(bt, "WEIGHTS_DIR", tmp_path / "weights" / "beats")
    bt._load_cached.cache_clear()
    try:
        with pytest.raises(CadenzaError, match="no beat tracker weights"):
            get_rhythm_tracker("neural")
        with pytest.warns(RuntimeWarning, match="falling back"):
            tracker = get_rhythm_tracker()
        assert isinstance(tracker, DSPBeatTracker)
        # a damaged shipped folder falls back the same way
        (tmp_path / "weights" / "beats").mkdir(parents=True)
        (tmp_path / "weights" / "beats" / "model.safetensors").write_bytes(b"\x00" * 10)
        (tmp_path / "weights" / "beats" / "config.json").write_text("{ not json")
        with pytest.warns(RuntimeWarning, match="falling back"):
            assert isinstance(get_rhythm_tracker("default"), DSPBeatTracker)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cs = extract_controls(click_track()[0], controls="rhythm")
        assert len(cs.beats) > 0
    finally:
        bt._load_cached.cache_clear()


# ---------------------------------------------------------------------------------------------- training
def test_batches_keep_targets_on_the_stretched_onsets() -> None:
    synth = synth_clicks(6, 3.0, seed=3)
    assert all(len(b) == 0 or (np.diff(b[:, 0]) > 0).all() for b in synth.beats)
    cfg = {"batch_size": 3, "crop_frames": 200, "stretch_prob": 1.0, "stretch_max": 1.25, "gain_db": 0.0}
    mel, target, valid = next(iter(BeatBatches(synth, None, cfg, seed=0)))
    assert mel.shape == (3, 128, 200) and target.shape == (3, 2, 200) and valid.shape == (3, 200)
    assert (target[:, :, valid[0].numel():] == 0).all() and ((target == 0) | (target == 0.5) | (target == 1)).all()
    flux = torch.relu(torch.diff(mel, dim=-1)).sum(1)  # onset strength at frame t+1
    for b in range(3):
        on = torch.nonzero(target[b, 0] == 1).flatten()
        on = on[(on > 1) & (on < valid[b].sum() - 1)]
        if on.numel():  # every beat target sits within a frame of a strong onset
            strong = flux[b] > 0.3 * flux[b].max()
            assert all(strong[max(i - 2, 0) : i + 1].any() for i in on.tolist())


def test_a_few_training_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    synth = synth_clicks(4, 2.0, seed=1)
    cfg = load_config("beats", "debug")
    module = BeatModule(cfg)
    mel, target, valid = next(iter(BeatBatches(synth, None, {**cfg["train"], "stretch_prob": 0.0}, seed=0)))
    opt = torch.optim.Adam(module.model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = beat_loss(module.model(mel), target, valid)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


def _click_corpus(data, specs) -> None:
    """A corpus folder of click tracks: one row per (split, bpm), no feature cache."""
    rows = []
    for i, (split, bpm) in enumerate(specs):
        audio, beats, downs = click_track(bpm, meter=4, bars=2, lead=0.1)
        path = save_audio(data / "clips" / f"c{i}.flac", audio)
        flags = np.isin(beats, downs).astype(float)
        cs = ControlSet.empty(num_frames(audio.size))
        cs.beats = np.stack([beats, flags], axis=1)
        cs.save(data / "clips" / f"c{i}.score.npz")
        rows.append({
            "id": f"c{i}", "path": f"clips/{path.name}", "duration": audio.size / SR, "n_samples": audio.size,
            "n_frames": num_frames(audio.size), "caption": "clicks", "captions": ["clicks"], "tags": [], "source": "music21",
            "work": f"w{i}", "split": split, "bpm": bpm, "meter": "4/4", "key": None, "programs": [], "drums": True,
            "controls": {"score": f"clips/c{i}.score.npz", "extracted": None},
        })
    (data / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_val_corpus_chooses_on_another_corpus(tmp_path) -> None:
    """``data.val_corpus``: train on one corpus, validate (and choose "best") on another's valid split."""
    _click_corpus(tmp_path / "big", [("train", 100.0), ("train", 130.0)])
    _click_corpus(tmp_path / "small", [("valid", 120.0)])
    overrides = [f"data.corpus={tmp_path / 'big'}", "train.max_steps=2", "log.val_every_steps=2", "train.synth_clips=4"]
    folder = fit_folder("beats", "debug", [*overrides, f"data.val_corpus={tmp_path / 'small'}"], tmp_path / "run", threads=1)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in log if "val_f1" in line] == [2]
    # shipping scores the valid split the run chose on (the training corpus has none)
    valid = json.loads((ship(folder, tmp_path / "shipped") / "config.json").read_text())["valid"]
    assert valid["corpus"] == str(tmp_path / "small") and valid["clips"] == 1
    fit_folder("beats", "debug", overrides, tmp_path / "alone", threads=1)  # the big corpus has no valid split
    log = [json.loads(line) for line in (tmp_path / "alone" / "train_log.jsonl").read_text().splitlines()]
    assert not any("val_f1" in line for line in log)


def test_train_script_end_to_end_on_a_tiny_corpus(tmp_path) -> None:
    """A 4-clip corpus without a feature cache: mels from the audio, beats from the score npz."""
    data = tmp_path / "corpus"
    _click_corpus(data, [("train", 100.0), ("train", 130.0), ("train", 90.0), ("valid", 120.0)])
    run = tmp_path / "run"
    overrides = [f"data.corpus={data}", "train.max_steps=6", "log.val_every_steps=3", "train.synth_clips=4"]
    folder = fit_folder("beats", "debug", overrides, run, threads=1)
    for model in (folder, run / "best"):  # the last step and the best by validation F1
        tracker = NeuralBeatTracker.load(model)
        assert tracker.track(click_track()[0], SR).shape[1] == 2
    assert json.loads((folder / "config.json").read_text())["train_step"] == 6
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in log if "val_f1" in line] == [3, 6]


def test_init_from_loads_a_model_folder_and_refuses_another_shape(tmp_path) -> None:
    """``train.init_from``: the TCN starts from a saved tracker; a folder of another shape or kind is one clear error."""
    cfg = load_config("beats", "debug")
    torch.manual_seed(1)
    source = NeuralBeatTracker(BeatTCN(cfg["model"]))
    source.save(tmp_path / "src")
    torch.manual_seed(2)
    module = BeatModule(cfg)
    assert not torch.equal(module.model.head.weight, source.model.head.weight)
    module.init_from(tmp_path / "src")
    for name, value in source.model.state_dict().items():
        assert torch.equal(module.model.state_dict()[name], value), name
    NeuralBeatTracker(BeatTCN({**cfg["model"], "channels": 16})).save(tmp_path / "wide")
    with pytest.raises(CadenzaError, match="another TCN shape.*channels"):
        BeatModule(cfg).init_from(tmp_path / "wide")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"kind": "cadenza-vocoder"}))
    (tmp_path / "other" / "model.safetensors").write_bytes((tmp_path / "src" / "model.safetensors").read_bytes())
    with pytest.raises(CadenzaError, match="not a beat tracker model folder"):
        BeatModule(cfg).init_from(tmp_path / "other")
    with pytest.raises(CadenzaError, match="no such model folder"):
        BeatModule(cfg).init_from(tmp_path / "missing")


def test_runner_starts_from_init_from_and_resume_keeps_its_own_weights(tmp_path) -> None:
    """With lr 0 the exported weights are exactly the init folder's: the runner loaded them before step 0."""
    cfg = load_config("beats", "debug")
    torch.manual_seed(3)
    source = NeuralBeatTracker(BeatTCN(cfg["model"]))
    source.save(tmp_path / "src")
    overrides = ["data.source=synthetic", f"train.init_from={tmp_path / 'src'}", "train.lr=0.0", "train.max_steps=2",
                 "train.synth_clips=0", "data.val_clips=0"]
    folder = fit_folder("beats", "debug", overrides, tmp_path / "run", threads=1)
    trained = NeuralBeatTracker.load(folder).model.state_dict()
    for name, value in source.model.state_dict().items():
        assert torch.equal(trained[name], value), name
    # shipping records the chain: this run, then what the init folder said of itself
    shipped = ship(folder, tmp_path / "shipped")
    history = json.loads((shipped / "config.json").read_text())["history"]
    assert [h.get("steps", h.get("train_step")) for h in history] == [2, None] and history[0]["init_from"] == str(tmp_path / "src")
    assert NeuralBeatTracker.load(shipped).postfilter == bt.DEFAULT_POSTFILTER
    # a resume takes the run's checkpoint, not the init folder (which may be gone by then)
    (tmp_path / "src" / "model.safetensors").unlink()
    fit_folder("beats", "debug", [*overrides, "train.max_steps=3"], tmp_path / "run", threads=1)  # resumes by itself


def test_band_shift_and_mask_augmentation_keep_targets_and_are_off_by_default() -> None:
    synth = synth_clicks(4, 2.0, seed=5)
    base = {"batch_size": 2, "crop_frames": 200, "stretch_prob": 0.0, "gain_db": 0.0}  # whole clips: no random crop
    plain = next(iter(BeatBatches(synth, None, base, seed=0)))
    off = next(iter(BeatBatches(synth, None, {**base, "freq_shift_max": 0, "freq_mask_max": 0}, seed=0)))
    assert all(torch.equal(a, b) for a, b in zip(plain, off))  # off draws nothing: the same stream
    aug = next(iter(BeatBatches(synth, None, {**base, "freq_shift_max": 6, "freq_mask_max": 12, "freq_mask_prob": 1.0}, seed=0)))
    assert torch.equal(aug[1], plain[1]) and torch.equal(aug[2], plain[2])  # beats do not move
    assert aug[0].shape == plain[0].shape and not torch.equal(aug[0], plain[0])
    floor = (aug[0] <= plain[0].min() + 1e-6).all(dim=-1)  # (B, n_mels): bands held at the floor
    assert floor.any(dim=1).all()  # each item has its masked band


def test_average_checkpoints_is_the_mean_of_the_last_ones(tmp_path) -> None:
    """``--average RUN --last K``: a model folder whose weights are the mean of the last K checkpoints."""
    from safetensors.torch import load_file

    from cadenza.train.beats import average_checkpoints, main

    data = tmp_path / "corpus"
    _click_corpus(data, [("train", 100.0), ("train", 130.0)])
    run = tmp_path / "run"
    overrides = [f"data.corpus={data}", "train.max_steps=3", "train.synth_clips=4", "checkpoint.every_steps=1", "checkpoint.keep_last=5"]
    fit_folder("beats", "debug", overrides, run, threads=1)
    steps = sorted((run / "checkpoints").glob("step-*"))[-2:]
    expected = {k[len("model."):]: v for k, v in load_file(steps[0] / "model.safetensors").items() if k.startswith("model.")}
    second = load_file(steps[1] / "model.safetensors")
    out = average_checkpoints(run, 2, tmp_path / "avg")
    tracker = NeuralBeatTracker.load(out)
    for name, value in tracker.model.state_dict().items():
        torch.testing.assert_close(value, (expected[name] + second["model." + name]) / 2)
    assert json.loads((out / "config.json").read_text())["averaged"]["checkpoints"] == [s.name for s in steps]
    assert tracker.track(click_track()[0], SR).shape[1] == 2
    assert main(["--average", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2  # no checkpoints: a clear error


def test_uncached_corpus_says_why_loading_takes_long(tmp_path, monkeypatch, capsys) -> None:
    """Without a feature cache the mels come from the audio (minutes on a large corpus): the
    loader says so and names the command that caches them, instead of sitting silent."""
    import cadenza.train.beats as beats_train

    _click_corpus(tmp_path / "c", [("train", 100.0), ("train", 130.0)])
    corpus = beats_train.load_beat_corpus(tmp_path / "c", "train")
    assert len(corpus.ids) == 2 and "feature cache" not in capsys.readouterr().err  # small: nothing said
    monkeypatch.setattr(beats_train, "UNCACHED_NOTICE_CLIPS", 2)
    again = beats_train.load_beat_corpus(tmp_path / "c", "train")
    err = " ".join(capsys.readouterr().err.split())
    assert "2 clips" in err and "no feature cache" in err and "cadenza data cache" in err
    assert all(torch.equal(a, b) for a, b in zip(corpus.mels, again.mels))
