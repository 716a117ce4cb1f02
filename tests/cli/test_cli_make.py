"""``cadenza controls make ...``: every verb writes a file that reads back; bad input is one clear error."""

from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import typer
from typer.testing import CliRunner

from cadenza.audio.format import FRAME_RATE, frames_for_duration
from cadenza.cli.controls_make import app
from cadenza.controls.base import ControlSet
from cadenza.controls.files import load_csvs, read_dynamics, read_melody, read_rhythm

T6 = frames_for_duration(6.0)


def _registered() -> bool:
    """Whether engineer A's ``cadenza controls`` group has ``make`` registered (then go through ``main``)."""
    try:
        from cadenza.cli import controls
    except ImportError:
        return False
    return any(g.name == "make" for g in controls.app.registered_groups)


def make(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Run ``cadenza controls make ARGS``; return (exit code, output text with rich's line wrapping undone)."""
    if _registered():
        from cadenza.cli import main

        code = main(["controls", "make", *args])
        captured = capsys.readouterr()
        return code, " ".join((captured.out + captured.err).split())
    result = CliRunner().invoke(app, args)
    text = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return 2, " ".join((text + str(result.exception)).split())
    return result.exit_code, " ".join(text.split())


def test_make_melody_from_notes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = make(["melody", "--notes", "C4:1 E4:1 G4:2", "--bpm", "100", "--out", "melody.csv"], capsys)
    assert code == 0, out
    assert (tmp_path / "melody.csv").read_text() == "start,end,pitch\n0,0.6,C4\n0.6,1.2,E4\n1.2,2.4,G4\n"
    cs = read_melody(tmp_path / "melody.csv", T6)
    assert (cs.pitch_classes()[: int(0.6 * FRAME_RATE)] == 0).all()
    assert "wrote" in out


def test_make_melody_npz_with_duration_and_offset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out_path = tmp_path / "m.npz"
    code, out = make(["melody", "--notes", "D4:2", "--bpm", "60", "--start", "1", "--duration", "6", "--out", str(out_path)], capsys)
    assert code == 0, out
    cs = ControlSet.load(out_path)
    assert cs.n_frames == T6 and cs.given() == ["melody"]
    assert not cs.melody_mask[: int(FRAME_RATE) - 1].any() and cs.melody_mask[int(FRAME_RATE) + 1]


def test_make_melody_from_midi(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    inst.notes = [pretty_midi.Note(velocity=80, pitch=62, start=0.0, end=1.0), pretty_midi.Note(velocity=80, pitch=69, start=0.25, end=0.5)]
    pm.instruments.append(inst)
    pm.write(str(tmp_path / "t.mid"))
    code, out = make(["melody", "--midi", str(tmp_path / "t.mid"), "--duration", "2", "--out", str(tmp_path / "m.csv")], capsys)
    assert code == 0, out
    assert (tmp_path / "m.csv").read_text() == "start,end,pitch\n0,0.25,D4\n0.25,0.5,A4\n0.5,1,D4\n"


def test_make_dynamics_shape(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "dynamics.csv"
    code, out = make(["dynamics", "--shape", "swell", "--start-db", "-35", "--range-db", "20", "--duration", "6", "--out", str(path)], capsys)
    assert code == 0, out
    cs = read_dynamics(path, T6)
    assert cs.dynamics_mask.all()
    assert cs.dynamics.max() == pytest.approx(-15, abs=0.01) and cs.dynamics[0] == pytest.approx(-35)
    # the spec form carries the same numbers; explicit flags override it
    code, _ = make(["dynamics", "--shape", "swell:-35:20", "--duration", "6", "--out", str(tmp_path / "b.csv")], capsys)
    assert code == 0 and (tmp_path / "b.csv").read_bytes() == path.read_bytes()
    code, _ = make(["dynamics", "--shape", "crescendo:-40:10", "--range-db", "5", "--curve", "cosine", "--start", "1", "--end", "3",
                    "--duration", "6", "--out", str(tmp_path / "c.npz")], capsys)
    assert code == 0
    c = ControlSet.load(tmp_path / "c.npz")
    v = c.dynamics[c.dynamics_mask > 0]
    assert v[0] == pytest.approx(-40, abs=0.01) and v[-1] == pytest.approx(-35, abs=0.01)
    assert not c.dynamics_mask[: int(FRAME_RATE) - 1].any() and not c.dynamics_mask[int(3 * FRAME_RATE) + 2:].any()


def test_make_rhythm_grid_and_stretch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "rhythm.csv"
    code, out = make(["rhythm", "--bpm", "120", "--meter", "4", "--duration", "6", "--out", str(path)], capsys)
    assert code == 0, out
    cs = read_rhythm(path, T6)
    assert len(cs.beats) == 12
    np.testing.assert_allclose(cs.downbeat_times(), [0, 2, 4])
    code, out = make(["rhythm", "--template", str(path), "--stretch", "0.8", "--duration", "6", "--out", str(tmp_path / "f.csv")], capsys)
    assert code == 0, out
    fast = read_rhythm(tmp_path / "f.csv", T6)
    np.testing.assert_allclose(np.diff(fast.beat_times()), 0.4)


def test_make_all_npz_and_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    npz = tmp_path / "controls.npz"
    code, out = make(["all", "--notes", "C4:1 E4:1 G4:2", "--dynamics", "crescendo", "--meter", "6/8", "--bpm", "100", "--out", str(npz)], capsys)
    assert code == 0, out
    cs = ControlSet.load(npz)
    assert cs.given() == ["melody", "dynamics", "rhythm"] and cs.n_frames == T6
    np.testing.assert_allclose(np.diff(cs.downbeat_times()), 1.2)  # 6/8 at 100 bpm: two 0.6 s beats a bar
    folder = tmp_path / "mine"
    code, out = make(["all", "--melody-csv", str(tmp_path / "nope.csv"), "--out", str(folder)], capsys)
    assert code != 0 and "no such melody file" in out
    (tmp_path / "m.csv").write_text("start,end,pitch\n0,1,A4\n")
    code, out = make(["all", "--melody-csv", str(tmp_path / "m.csv"), "--dynamics", "flat:-20", "--out", str(folder)], capsys)
    assert code == 0, out
    back = load_csvs(folder, T6)
    assert back.given() == ["melody", "dynamics"]
    assert set(back.dynamics[back.dynamics_mask > 0]) == {-20.0}


def test_make_reports_ignored_notes_as_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out = make(["melody", "--notes", "C4:1 R:10 D4:1", "--duration", "2", "--out", str(tmp_path / "m.csv")], capsys)
    assert code == 0, out
    assert "warning:" in out and "1 note(s) start after the end of the clip" in out
    assert (tmp_path / "m.csv").read_text() == "start,end,pitch\n0,0.5,C4\n"


@pytest.mark.parametrize(
    "args, problem",
    [
        (["melody", "--notes", "C4:1 H4:1", "--out", "m.csv"], "unknown note 'H4'"),
        (["melody", "--notes", "C4:1", "--bpm", "0", "--out", "m.csv"], "bpm must be positive"),
        (["melody", "--notes", "C4:1", "--bpm", "900", "--out", "m.csv"], "absurd"),
        (["melody", "--out", "m.csv"], "exactly one of"),
        (["melody", "--notes", "C4:1", "--out", "m.wav"], "unsupported output type"),
        (["dynamics", "--shape", "wobble", "--out", "d.csv"], "unknown dynamics shape"),
        (["dynamics", "--shape", "crescendo", "--start-db", "-5", "--out", "d.csv"], "out of range"),
        (["rhythm", "--meter", "5/8", "--out", "r.csv"], "unknown meter"),
        (["rhythm", "--bpm", "-3", "--out", "r.csv"], "bpm must be positive"),
        (["all", "--out", "c.npz"], "no control given"),
        (["all", "--notes", "C4", "--out", "c.csv"], "cannot write combined controls"),
    ],
)
def test_make_errors_are_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                        args: list[str], problem: str) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = make(args, capsys)
    assert code != 0
    assert problem in out
    assert "Traceback" not in out
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_every_verb_help_has_an_example() -> None:
    runner = CliRunner()
    for verb in ("melody", "dynamics", "rhythm", "all"):
        result = runner.invoke(app, [verb, "--help"], terminal_width=200)
        assert result.exit_code == 0
        assert "Examples" in result.output and "cadenza controls make " + verb in result.output
    assert isinstance(app, typer.Typer)
