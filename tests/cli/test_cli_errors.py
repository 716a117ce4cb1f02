"""Bad input to any verb is one ``error:`` line and one ``hint:`` line, never a traceback; ``--debug`` shows it."""

from __future__ import annotations

import pytest

from cadenza.cli import main
from cadenza.errors import CadenzaError

GEN = ["generate", "calm piano", "--out", "{tmp}/o.wav", "--model", "{model}", "--steps", "1"]

CASES = {
    "missing audio file": ["controls", "extract", "{tmp}/missing.wav"],
    "corrupt audio": ["controls", "extract", "{bad_wav}", "--out", "{tmp}/c.npz"],
    "corrupt reference audio": [*GEN, "--controls-from", "{bad_wav}"],
    "corrupt controls file": ["controls", "plot", "{bad_npz}"],
    "negative duration": [*GEN, "--duration", "-2"],
    "negative duration of a made rhythm": ["controls", "make", "rhythm", "--bpm", "120", "--duration", "-3", "--out", "{tmp}/r.csv"],
    "unknown note name": ["controls", "make", "melody", "--notes", "C4:1 H4:1", "--out", "{tmp}/m.csv"],
    "unknown note name in generate": [*GEN, "--melody", "H4:1"],
    "unknown model dir": [*GEN[:4], "--model", "{tmp}/no-model"],
    "bad override key": ["train", "generator", "debug", "train.max_stepz=3", "--out", "{tmp}/run"],
    "bad override value": ["train", "generator", "debug", "train.max_steps=abc", "--out", "{tmp}/run"],
    "override without =": ["train", "generator", "debug", "train.max_steps", "--out", "{tmp}/run"],
    "missing option": ["generate", "calm piano"],
    "value of the wrong type": [*GEN, "--steps", "many"],
    "negative threads": [*GEN, "--threads", "-1"],
    "missing mel for vocode": ["vocode", "{tmp}/missing.npy", "--out", "{tmp}/o.wav", "--griffin-lim"],
    "missing data folder": ["data", "index", "{tmp}/no-folder", "--out", "{tmp}/ds"],
    "unknown preset": ["data", "build", "--preset", "huge", "--out", "{tmp}/ds"],
    "missing case set": ["eval", "{tmp}/no-cases", "--out", "{tmp}/report"],
    "port out of range": ["serve", "--port", "99999"],
    "no studio history": ["history", "list", "--root", "{tmp}/nowhere"],
}


@pytest.fixture
def paths(tmp_path, debug_model) -> dict[str, str]:
    bad_wav = tmp_path / "broken.wav"
    bad_wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    bad_npz = tmp_path / "broken.npz"
    bad_npz.write_bytes(b"PK\x03\x04 not a zip")
    return {"tmp": str(tmp_path), "model": str(debug_model), "bad_wav": str(bad_wav), "bad_npz": str(bad_npz)}


def _one_line_error(err: str) -> list[str]:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), err
    assert len(lines) <= 2 and all(line.startswith("hint: ") for line in lines[1:]), f"more than error + hint:\n{err}"
    return lines


@pytest.mark.parametrize("args", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_line_with_a_hint(args: list[str], paths: dict[str, str], capsys) -> None:
    rc = main([a.format(**paths) for a in args])
    out, err = capsys.readouterr()
    assert rc != 0
    assert "Traceback" not in out + err and out == ""
    lines = _one_line_error(err)
    assert len(lines) == 2, f"no hint:\n{err}"
    assert "unexpected" not in lines[0], f"a user error reported as a bug:\n{err}"


def test_debug_shows_the_traceback(tmp_path) -> None:
    with pytest.raises(CadenzaError, match="no such file"):
        main(["--debug", "controls", "extract", str(tmp_path / "missing.wav")])


def test_a_bug_is_one_line_too_and_debug_reraises(monkeypatch, tmp_path, capsys) -> None:
    import cadenza.controls.extract as extract

    def broken(*args, **kwargs):
        raise RuntimeError("something inside broke\nover two lines")

    monkeypatch.setattr(extract, "extract_from_file", broken)
    song = tmp_path / "s.wav"
    song.write_bytes(b"")
    assert main(["controls", "extract", str(song)]) == 1
    lines = _one_line_error(capsys.readouterr().err)
    assert lines[0] == "error: unexpected RuntimeError: something inside broke over two lines"
    assert "--debug" in lines[1]
    with pytest.raises(RuntimeError):
        main(["--debug", "controls", "extract", str(song)])
