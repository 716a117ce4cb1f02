import numpy as np
import pytest
import soundfile as sf

from cadenza.audio import SAMPLE_RATE, load_audio, loudness_normalize, peak_normalize, resample, save_audio
from cadenza.errors import CadenzaError


def _tone(seconds: float = 0.5, sr: int = SAMPLE_RATE, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("ext", [".wav", ".flac", ".ogg", ".mp3"])
def test_roundtrip_formats(tmp_path, ext):
    audio = _tone()
    path = save_audio(tmp_path / f"a{ext}", audio)
    back = load_audio(path)
    assert back.dtype == np.float32 and back.ndim == 1
    # lossy codecs pad/delay a little; the tone's level must survive
    assert abs(len(back) - len(audio)) < 0.1 * SAMPLE_RATE
    assert abs(np.sqrt(np.mean(back**2)) - np.sqrt(np.mean(audio**2))) < 0.05


def test_resample_and_mono(tmp_path):
    sr = 44100
    stereo = np.stack([_tone(1.0, sr), _tone(1.0, sr, 220.0)], axis=1)
    path = tmp_path / "s.wav"
    sf.write(path, stereo, sr)
    out = load_audio(path)
    assert out.shape == (SAMPLE_RATE,)
    spec = np.abs(np.fft.rfft(out))
    freqs = np.fft.rfftfreq(len(out), 1 / SAMPLE_RATE)
    top2 = sorted(freqs[np.argsort(spec)[-2:]].round())
    assert top2 == [220.0, 440.0]
    multi = load_audio(path, mono=False)
    assert multi.shape == (2, SAMPLE_RATE)


def test_resample_identity_and_length():
    x = _tone(1.0)
    assert resample(x, SAMPLE_RATE, SAMPLE_RATE) is x
    y = resample(x, SAMPLE_RATE, 16000)
    assert abs(len(y) - 16000) <= 1


def test_missing_empty_corrupt_unsupported(tmp_path):
    with pytest.raises(CadenzaError, match="no such file"):
        load_audio(tmp_path / "nope.wav")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(CadenzaError, match="empty"):
        load_audio(empty)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....WAVEfmt garbage" * 10)
    with pytest.raises(CadenzaError, match="cannot decode") as err:
        load_audio(corrupt)
    assert "corrupt.wav" in str(err.value) and "\n" not in str(err.value)
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(CadenzaError, match="unsupported audio format"):
        load_audio(txt)


def test_nan_and_too_short(tmp_path):
    bad = _tone()
    bad[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, bad, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(CadenzaError, match="NaN"):
        load_audio(path)
    short = save_audio(tmp_path / "short.wav", _tone(0.05))
    with pytest.raises(CadenzaError, match="too short"):
        load_audio(short, min_seconds=1.0)
    with pytest.raises(CadenzaError, match="NaN"):
        save_audio(tmp_path / "x.wav", bad)


def test_header_only_file_has_no_samples(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), SAMPLE_RATE)
    with pytest.raises(CadenzaError, match="no audio samples"):
        load_audio(path)


def test_silence_is_valid(tmp_path):
    path = save_audio(tmp_path / "silence.flac", np.zeros(SAMPLE_RATE, np.float32))
    assert np.all(load_audio(path) == 0)


def test_save_is_atomic_and_leaves_no_temp(tmp_path):
    save_audio(tmp_path / "a.wav", _tone())
    save_audio(tmp_path / "a.wav", _tone(freq=220))  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


def test_normalisation():
    x = _tone() * 0.1
    assert np.isclose(np.abs(peak_normalize(x, -6.0)).max(), 10 ** (-6 / 20), rtol=1e-4)
    y = loudness_normalize(x, -20.0)
    assert np.isclose(20 * np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2))), -20.0, atol=0.05)
    silent = np.zeros(100, np.float32)
    assert np.all(peak_normalize(silent) == 0) and np.all(loudness_normalize(silent) == 0)
