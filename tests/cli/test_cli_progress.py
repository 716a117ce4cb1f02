"""Progress bars of the long-running verbs: step by step, on stderr only, silent with --quiet."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from cadenza.cli import main
from cadenza.cli.progress import progress_bar


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=100), buf


def test_bar_counts_and_draws_its_final_state_once() -> None:
    console, buf = _console()
    with progress_bar("working", total=3, console=console) as bar:
        for i in range(3):
            bar.advance(info=f"item {i}")
        assert (bar.done, bar.total) == (3, 3)
    text = buf.getvalue()
    assert "working" in text and "3/3" in text and "item 2" in text
    assert text.count("working") == 1  # not a terminal: no animation frames, one summary line


def test_quiet_bar_and_unstarted_bar_draw_nothing() -> None:
    console, buf = _console()
    with progress_bar("quiet", total=2, console=console, quiet=True) as bar:
        bar.update(1)
        bar.update(2)
    assert bar.done == 2 and buf.getvalue() == ""
    with pytest.raises(ValueError):  # a verb that fails before its first update prints no empty bar
        with progress_bar("never", console=console):
            raise ValueError("bad input")
    assert buf.getvalue() == ""


def test_generate_shows_sampling_steps_on_stderr(debug_model, tmp_path, capsys) -> None:
    out = tmp_path / "x.wav"
    args = ["generate", "calm piano", "--out", str(out), "--model", str(debug_model), "--duration", "1", "--steps", "3"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing but the audio and its JSON is written: stdout stays clean
    assert "sampling" in captured.err and "3/3" in captured.err
    assert main([*args, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "━" not in err and "3/3" not in err and "wrote" in err
    assert json.loads(out.with_suffix(".json").read_text())["steps"] == 3


def test_long_form_progress_counts_every_window(debug_model) -> None:
    from cadenza import Cadenza

    calls: list[tuple[int, int]] = []
    gen = Cadenza.load(debug_model)
    gen.generate("x", duration=9.0, steps=2, progress=lambda done, total: calls.append((done, total)))
    # the debug config's window is 4 s with 0.5 s overlap: 9 s takes three windows of 2 steps each
    assert calls == [(i, 6) for i in range(1, 7)]


def test_controls_extract_many_files_shows_progress(two_songs, tmp_path, capsys) -> None:
    out = tmp_path / "controls"
    assert main(["controls", "extract", *map(str, two_songs), "--out", str(out), "--tracker", "dsp"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.npz", "b.npz"]
    err = capsys.readouterr().err
    assert "extracting controls" in err and "2/2" in err
    assert main(["controls", "extract", *map(str, two_songs), "--out", str(out), "--tracker", "dsp", "-q"]) == 0
    assert "━" not in capsys.readouterr().err


def test_controls_extract_many_files_needs_a_folder(two_songs, tmp_path, capsys) -> None:
    assert main(["controls", "extract", *map(str, two_songs), "--out", str(tmp_path / "one.npz")]) == 2
    assert "pass a folder" in capsys.readouterr().err


def test_vocode_many_files_shows_progress(two_songs, tmp_path, capsys) -> None:
    out = tmp_path / "voc"
    assert main(["vocode", *map(str, two_songs), "--out", str(out), "--griffin-lim"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.wav", "b.wav"]
    err = capsys.readouterr().err
    assert "vocoding files" in err and "2/2" in err


def test_data_index_shows_progress(two_songs, tmp_path, capsys) -> None:
    assert main(["data", "index", str(two_songs[0].parent), "--out", str(tmp_path / "ds"), "--clip-seconds", "1"]) == 0
    err = capsys.readouterr().err
    assert "indexing" in err and "2/2" in err


def test_train_quiet_turns_the_runners_bar_off(monkeypatch, tmp_path) -> None:
    import cadenza.train.runner as runner

    seen: dict = {}

    def fake_fit(task, cfg, out, **kwargs):
        seen["progress"] = cfg["log"]["progress"]

    monkeypatch.setattr(runner, "fit", fake_fit)
    assert main(["train", "generator", "debug", "--out", str(tmp_path / "r")]) == 0
    assert seen["progress"] is True
    assert main(["train", "generator", "debug", "train.max_steps=3", "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert seen["progress"] is False


def test_eval_reports_progress_on_stderr_and_quiet_silences_it(monkeypatch, tmp_path, capsys) -> None:
    import cadenza.eval.run as run

    seen: dict = {}

    def fake_run_eval(cases, out, **kwargs):
        seen.update(kwargs)
        kwargs["progress"](0, 2, "case-a")
        kwargs["progress"](2, 2, "")
        return {"config": {"n_cases": 2}, "run": {"wall_s": 0.0}}

    monkeypatch.setattr(run, "run_eval", fake_run_eval)
    argv = ["eval", str(tmp_path / "cases"), "--out", str(tmp_path / "rep")]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "evaluating cases" in captured.err and "2/2" in captured.err
    assert seen["rhythm_tracker"] == "default"  # the same tracker as 'controls extract' and score_clip
    assert main([*argv, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "━" not in err and "2/2" not in err and "wrote" in err
    assert main([*argv, "--rhythm-tracker", "dsp"]) == 0
    assert seen["rhythm_tracker"] == "dsp"


def test_generate_takes_the_guidance_options_and_records_them(debug_model, tmp_path, capsys) -> None:
    """--control-cfg, --dynamics-guidance and --downbeat-cfg reach the sampler and the output's JSON."""
    out = tmp_path / "g.wav"
    args = ["generate", "a march", "--out", str(out), "--model", str(debug_model), "--duration", "1", "--steps", "2", "--bpm", "120",
            "--dynamics", "crescendo", "--control-cfg", "2", "--dynamics-guidance", "0.5", "--downbeat-cfg", "3", "--quiet"]
    assert main(args) == 0
    info = json.loads(out.with_suffix(".json").read_text())
    assert (info["control_cfg"], info["dynamics_guidance"], info["downbeat_cfg"]) == (2.0, 0.5, 3.0)
    assert "downbeat cfg 3" in capsys.readouterr().err
