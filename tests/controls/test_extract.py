"""Extraction recovers known answers from synthesised signals (notes, click tracks, level ramps)."""

from __future__ import annotations

import mir_eval
import numpy as np
import pytest

from cadenza.audio import FRAME_RATE, SAMPLE_RATE, num_frames, resample, save_audio
from cadenza.controls import ControlSet
from cadenza.controls.extract import extract_controls, extract_controls_batch, extract_from_file, parse_control_names
from cadenza.controls.rhythm import DSPBeatTracker, RhythmTracker, describe_rhythm_tracker, get_rhythm_tracker, register_rhythm_tracker
from cadenza.errors import CadenzaError

SR = SAMPLE_RATE
NOTE_S = 0.4
MELODY = [60, 64, 67, 71, 74, 65, 69, 62, 72, 61]  # C4 E4 G4 B4 D5 F4 A4 D4 C5 C#4


def note(midi: int, seconds: float, kind: str, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    f = 440.0 * 2 ** ((midi - 69) / 12)
    wave = np.sin(2 * np.pi * f * t) if kind == "sine" else 2 * ((f * t) % 1.0) - 1
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms fades, no clicks
    return (amp * wave * ramp).astype(np.float32)


def melody_signal() -> tuple[np.ndarray, np.ndarray]:
    """Sine and sawtooth notes; truth is -1 within 50 ms of a note boundary."""
    audio = np.concatenate([note(m, NOTE_S, "sine" if i % 2 == 0 else "saw") for i, m in enumerate(MELODY)])
    t = np.arange(num_frames(audio.size)) / FRAME_RATE
    idx = np.minimum((t // NOTE_S).astype(int), len(MELODY) - 1)
    pos = t - idx * NOTE_S
    truth = np.where((pos > 0.05) & (pos < NOTE_S - 0.05), np.array(MELODY)[idx] % 12, -1)
    return audio, truth


def click_track(bpm: float = 120.0, meter: int = 4, bars: int = 4, lead: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Metronome clicks, the first of each bar louder and higher; returns audio, beat times, downbeat times."""
    period = 60.0 / bpm
    times = lead + np.arange(bars * meter) * period
    audio = np.zeros(int((times[-1] + 0.6) * SR), np.float32)
    n = int(0.03 * SR)
    env = np.exp(-np.arange(n) / (0.004 * SR))
    for i, t in enumerate(times):
        down = i % meter == 0
        s = int(round(t * SR))
        audio[s : s + n] += (0.9 if down else 0.3) * env * np.sin(2 * np.pi * (1500 if down else 1000) * np.arange(n) / SR)
    return audio, times, times[::meter]


# ---------------------------------------------------------------------------- melody
def test_melody_recovers_pitch_classes_of_sine_and_saw_notes() -> None:
    audio, truth = melody_signal()
    cs = extract_controls(audio, controls="melody")
    pc = cs.pitch_classes()
    judged = truth >= 0
    assert cs.n_frames == num_frames(audio.size)
    assert np.mean(pc[judged] == truth[judged]) >= 0.95
    assert cs.melody_mask[judged].all()
    assert not cs.dynamics_mask.any() and not cs.rhythm_mask.any()  # not asked for: left free


def test_melody_notes_are_runs_written_in_octave_four() -> None:
    audio, _ = melody_signal()
    notes = extract_controls(audio, controls=["melody"]).melody_notes
    long = notes[(notes[:, 1] - notes[:, 0]) > 0.2]  # ignore one-frame blips at boundaries
    assert long.shape[0] == len(MELODY)
    np.testing.assert_array_equal(long[:, 2], 60 + np.array(MELODY) % 12)
    np.testing.assert_allclose(long[:, 0], np.arange(len(MELODY)) * NOTE_S, atol=0.04)
    assert (np.diff(notes[:, 0]) > 0).all() and (notes[:, 1] > notes[:, 0]).all()


def test_bass_below_middle_c_is_suppressed_by_the_high_pass() -> None:
    # a loud bass C2 under a quieter melody E5: the melody pitch class should win
    bass = note(36, 2.0, "sine", amp=0.6)
    lead = note(76, 2.0, "sine", amp=0.15)
    pc = extract_controls(bass + lead, controls="melody").pitch_classes()
    assert np.mean(pc[10:-10] == 4) > 0.95


# ---------------------------------------------------------------------------- rhythm
def test_click_track_beats_and_downbeats_in_four_four() -> None:
    audio, beats, downbeats = click_track(120.0, meter=4)
    cs = extract_controls(audio, controls="rhythm")
    assert mir_eval.beat.f_measure(beats, cs.beat_times(), f_measure_threshold=0.07) >= 0.95
    assert mir_eval.beat.f_measure(downbeats, cs.downbeat_times(), f_measure_threshold=0.07) >= 0.95
    # activations sit on the beat frames
    frames = np.rint(cs.beat_times() * FRAME_RATE).astype(int)
    assert (cs.rhythm[frames, 0] == 1).all() and cs.rhythm_mask.all()
    assert cs.rhythm[:, 1].sum() < cs.rhythm[:, 0].sum()


def test_waltz_downbeats_find_three_four() -> None:
    audio, beats, downbeats = click_track(150.0, meter=3, bars=5)
    out = DSPBeatTracker().track(audio, SR)
    assert mir_eval.beat.f_measure(beats, out[:, 0]) >= 0.95
    assert mir_eval.beat.f_measure(downbeats, out[out[:, 1] > 0, 0]) >= 0.95


def test_tracker_registry_and_plugin() -> None:
    assert isinstance(get_rhythm_tracker("dsp"), DSPBeatTracker)
    assert describe_rhythm_tracker("dsp") == "dsp" and describe_rhythm_tracker(DSPBeatTracker()) == "dsp"
    assert describe_rhythm_tracker("default") in ("default (neural)", "default (dsp)")
    with pytest.raises(CadenzaError, match="unknown rhythm tracker"):
        get_rhythm_tracker("madmom")

    class Fixed:
        def track(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
            return np.array([[1.0, 0.0], [0.5, 1.0]])  # unsorted on purpose

    assert isinstance(Fixed(), RhythmTracker)
    register_rhythm_tracker("fixed-test", Fixed)
    cs = extract_controls(np.zeros(SR * 2, np.float32), controls="rhythm", rhythm_tracker="fixed-test")
    np.testing.assert_array_equal(cs.beats, [[0.5, 1.0], [1.0, 0.0]])
    assert cs.rhythm[int(round(0.5 * FRAME_RATE)), 1] == 1 and cs.rhythm[int(round(1.0 * FRAME_RATE)), 0] == 1


# ---------------------------------------------------------------------------- dynamics
def test_dynamics_follow_a_linear_db_ramp() -> None:
    rng = np.random.default_rng(0)
    seconds = 4.0
    t = np.arange(int(seconds * SR)) / SR
    true_db = -30.0 + 10.0 * t / seconds
    audio = (rng.standard_normal(t.size) * 10 ** (true_db / 20)).astype(np.float32)  # unit-variance noise: RMS = gain
    cs = extract_controls(audio, controls="dynamics")
    ft = np.arange(cs.n_frames) / FRAME_RATE
    inner = (ft > 0.6) & (ft < seconds - 0.6)
    expect = -30.0 + 10.0 * ft / seconds
    assert np.corrcoef(cs.dynamics[inner], expect[inner])[0, 1] >= 0.99
    assert np.abs(cs.dynamics[inner] - expect[inner]).max() < 1.0
    np.testing.assert_allclose(cs.dynamics_points[:, 1], cs.dynamics, atol=1e-4)
    assert cs.dynamics_mask.all()


def test_full_scale_sine_reads_minus_three_db() -> None:
    t = np.arange(SR) / SR
    cs = extract_controls(np.sin(2 * np.pi * 1000 * t).astype(np.float32), controls="dynamics")
    np.testing.assert_allclose(cs.dynamics, -3.01, atol=0.05)


# ---------------------------------------------------------------------------- edge cases
def test_silence_gives_well_defined_controls() -> None:
    cs = extract_controls(np.zeros(SR, np.float32))
    assert np.isfinite(cs.dynamics).all()
    np.testing.assert_allclose(cs.dynamics, -100.0)
    assert not cs.melody_mask.any() and not cs.melody.any() and cs.melody_notes.shape == (0, 3)
    assert cs.beats.shape == (0, 2) and not cs.rhythm.any()


def test_very_short_clip_still_extracts() -> None:
    cs = extract_controls(np.full(300, 0.1, np.float32))
    assert cs.n_frames == 2 and np.isfinite(cs.dynamics).all()
    clicks, _, _ = click_track(60.0, meter=2, bars=1, lead=0.05)
    short = extract_controls(clicks[: SR // 2])  # beat window longer than the clip
    assert short.n_frames == SR // 2 // 256 + 1
    assert ((short.beat_times() >= 0) & (short.beat_times() <= short.duration)).all()


def test_batch_equals_per_item() -> None:
    audio, _ = melody_signal()
    clicks, _, _ = click_track(120.0, bars=2)
    n = min(audio.size, clicks.size)
    batch = np.stack([audio[:n], clicks[:n], np.zeros(n, np.float32)])
    together = extract_controls_batch(batch)
    for row, cs in zip(batch, together):
        alone = extract_controls(row)
        for name, value in alone.as_arrays().items():
            np.testing.assert_allclose(getattr(cs, name), value, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(cs.beats, alone.beats)
        np.testing.assert_allclose(cs.melody_notes, alone.melody_notes)


def test_other_sample_rates_are_resampled() -> None:
    audio, truth = melody_signal()
    hi = resample(audio, SR, 44100)
    cs = extract_controls(hi, sample_rate=44100, controls="melody,dynamics")
    ref = extract_controls(audio, controls="melody,dynamics")
    assert abs(cs.n_frames - ref.n_frames) <= 1
    T = min(cs.n_frames, ref.n_frames)
    judged = truth[:T] >= 0
    assert np.mean(cs.pitch_classes()[:T][judged] == truth[:T][judged]) >= 0.95
    np.testing.assert_allclose(cs.dynamics[10 : T - 10], ref.dynamics[10 : T - 10], atol=0.3)


def test_extract_from_file_round_trip(tmp_path) -> None:
    audio, truth = melody_signal()
    path = save_audio(tmp_path / "tune.wav", audio)
    cs = extract_from_file(path)
    assert isinstance(cs, ControlSet) and cs.given() == ["melody", "dynamics", "rhythm"]
    judged = truth >= 0
    assert np.mean(cs.pitch_classes()[judged] == truth[judged]) >= 0.95


@pytest.mark.parametrize(
    "audio, match",
    [
        (np.array([0.0, np.nan, 0.1], np.float32), "NaN"),
        (np.zeros(0, np.float32), "empty"),
        (np.zeros((2, 1000), np.float32), "mono"),
        (np.zeros((2, 2, 10), np.float32), "shape"),
    ],
)
def test_bad_audio_raises_cadenza_error(audio: np.ndarray, match: str) -> None:
    with pytest.raises(CadenzaError, match=match):
        extract_controls(audio)


def test_bad_batch_and_names_raise() -> None:
    with pytest.raises(CadenzaError, match="2-D"):
        extract_controls_batch(np.zeros(100, np.float32))
    with pytest.raises(CadenzaError, match="unknown control"):
        parse_control_names("melody,tempo")
    with pytest.raises(CadenzaError, match="no controls"):
        parse_control_names(" , ")
    assert parse_control_names("rhythm, Melody") == ("melody", "rhythm")


def test_crescendo_is_not_mistaken_for_accents() -> None:
    # notes on every beat over a 4/4 click track, rising 20 dB: accents must be read relative to the trend
    from cadenza.controls.plot import demo_signal

    out = DSPBeatTracker().track(demo_signal(6.0, bpm=120.0), SR)
    truth = np.arange(12) * 0.5
    assert mir_eval.beat.f_measure(truth, out[:, 0]) >= 0.9  # the beat at 0 s has no onset to see
    downs = out[out[:, 1] > 0, 0]
    assert len(downs) >= 2
    np.testing.assert_allclose(downs / 2.0, np.round(downs / 2.0), atol=0.04)  # bars start every 2 s


def test_tracker_by_model_folder(tmp_path) -> None:
    """A tracker you trained is used by passing its model folder wherever a tracker name goes."""
    from cadenza.controls.beat_tracker import BeatTCN, NeuralBeatTracker

    folder = NeuralBeatTracker(BeatTCN({"channels": 8, "dilations": [1, 2]})).save(tmp_path / "mine")
    tracker = get_rhythm_tracker(str(folder))
    assert isinstance(tracker, NeuralBeatTracker) and tracker.model.config["channels"] == 8
    assert describe_rhythm_tracker(str(folder)) == f"{folder} (neural)"
    audio = np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE * 2).astype(np.float32)
    cs = extract_controls(audio, SAMPLE_RATE, rhythm_tracker=str(folder))
    assert cs.rhythm.shape == (num_frames(audio.size), 2)
    with pytest.raises(CadenzaError, match="neither a tracker name nor a folder"):
        get_rhythm_tracker(str(tmp_path / "missing"))
