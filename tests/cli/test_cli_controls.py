"""``cadenza controls extract`` / ``plot`` end to end, through ``cadenza.cli.main``."""

from __future__ import annotations

import pytest

from cadenza.audio import SAMPLE_RATE, save_audio
from cadenza.cli import main
from cadenza.controls import ControlSet
from cadenza.controls.plot import demo_signal


@pytest.fixture
def song(tmp_path):
    return save_audio(tmp_path / "song.wav", demo_signal(3.0))


def test_extract_writes_npz_that_loads(song, tmp_path, capsys) -> None:
    out = tmp_path / "c.npz"
    assert main(["controls", "extract", str(song), "--out", str(out)]) == 0
    cs = ControlSet.load(out)
    assert cs.given() == ["melody", "dynamics", "rhythm"]
    assert cs.n_frames == int(3.0 * SAMPLE_RATE) // 256 + 1
    assert len(cs.beats) >= 4
    err = capsys.readouterr().err
    assert "wrote" in err and "beats" in err


def test_extract_subset_and_csv(song, tmp_path) -> None:
    out, folder = tmp_path / "m.npz", tmp_path / "csvs"
    assert main(["controls", "extract", str(song), "--out", str(out), "--use", "melody,dynamics", "--csv", str(folder)]) == 0
    cs = ControlSet.load(out)
    assert cs.given() == ["melody", "dynamics"]
    assert sorted(p.name for p in folder.iterdir()) == ["dynamics.csv", "melody.csv"]


def test_corrupt_audio_is_a_one_line_error(tmp_path, capsys) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    assert main(["controls", "extract", str(bad), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "broken.wav" in err and "Traceback" not in err
    assert not (tmp_path / "x.npz").exists()


def test_bad_options_are_errors(song, tmp_path, capsys) -> None:
    assert main(["controls", "extract", str(song), "--out", str(tmp_path / "x.npz"), "--use", "tempo"]) == 2
    assert "unknown control" in capsys.readouterr().err
    assert main(["controls", "extract", str(song), "--out", str(tmp_path / "x.json")]) == 2
    assert main(["controls", "plot", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "x.png")]) == 2


def test_plot_from_audio_and_from_npz(song, tmp_path) -> None:
    fig = tmp_path / "fig.png"
    assert main(["controls", "plot", str(song), "--out", str(fig)]) == 0
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    npz = tmp_path / "c.npz"
    assert main(["controls", "extract", str(song), "--out", str(npz), "--use", "rhythm"]) == 0
    fig2 = tmp_path / "fig2.png"
    assert main(["controls", "plot", str(npz), "--out", str(fig2), "--audio", str(song)]) == 0
    assert fig2.stat().st_size > 1000


def test_help_shows_examples(capsys) -> None:
    for verb in ("extract", "plot"):
        assert main(["controls", verb, "--help"]) == 0
        assert "Examples" in capsys.readouterr().out
    assert main(["controls", "make", "--help"]) == 0
