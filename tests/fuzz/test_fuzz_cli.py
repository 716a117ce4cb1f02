"""CLI fuzz: seeded malformed arguments to every verb, run in-process through ``cadenza.cli.main``.

Each case must end in a valid result (exit 0) or one ``error:`` line plus a ``hint:`` line (exit 2),
never a traceback or an "unexpected" error, within ``CASE_LIMIT_S``, and write nothing outside
the sandbox folder it runs in.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import Hang, snapshot, time_limit
from contract import METER_BAD, TEXT_BAD, Draw, odd_audio_files, write_files

from cadenza.cli import main

N_CASES = 160


def _opt(args: list[str], d: Draw, flag: str, kind: str, bad_pool: list[str] | None = None, p_omit: float = 0.3) -> bool:
    """Maybe append ``flag value``; return whether the value was a bad one."""
    if d.chance(p_omit):
        return False
    value, bad = d.value(kind, bad_pool)
    args += [flag, value]
    return bad


def _case(i: int, d: Draw, work: Path, model: Path, files: dict[str, Path]) -> list[str]:
    out = str(work / f"out{i}")
    verb = d.pick(["melody", "dynamics", "rhythm", "all", "generate", "generate", "extract", "train", "build", "index", "vocode", "serve", "template"])
    args: list[str]
    if verb == "melody":
        args = ["controls", "make", "melody", "--out", out + d.pick([".csv", ".npz", ".txt", ""])]
        args += ["--notes", d.value("notes", TEXT_BAD)[0]] if d.chance(0.8) else ["--midi", str(d.pick(list(files.values())))]
        _opt(args, d, "--bpm", "bpm")
        _opt(args, d, "--start", "time")
        _opt(args, d, "--duration", "duration")
    elif verb == "dynamics":
        args = ["controls", "make", "dynamics", "--out", out + d.pick([".csv", ".npz"])]
        args += ["--shape", d.value("shape", TEXT_BAD)[0]]
        for flag, kind in (("--start-db", "db"), ("--range-db", "range_db"), ("--start", "time"), ("--end", "duration"), ("--duration", "duration")):
            _opt(args, d, flag, kind, p_omit=0.6)
        _opt(args, d, "--curve", "curve", TEXT_BAD, p_omit=0.6)
    elif verb == "rhythm":
        args = ["controls", "make", "rhythm", "--out", out + ".csv"]
        _opt(args, d, "--bpm", "bpm")
        _opt(args, d, "--meter", "meter", METER_BAD)
        for flag, kind in (("--start", "time"), ("--end", "duration"), ("--duration", "duration")):
            _opt(args, d, flag, kind, p_omit=0.5)
    elif verb == "template":
        args = ["controls", "make", "rhythm", "--out", out + ".csv", "--template", str(files[d.pick(["rhythm_ok.csv", "rhythm_huge.csv", "rhythm_bad.csv", "rhythm_many.csv"])])]
        _opt(args, d, "--stretch", "stretch")
        _opt(args, d, "--duration", "duration", p_omit=0.5)
    elif verb == "all":
        args = ["controls", "make", "all", "--out", out + ".npz", "--notes", d.value("notes", TEXT_BAD)[0]]
        _opt(args, d, "--dynamics", "shape", TEXT_BAD)
        _opt(args, d, "--meter", "meter", METER_BAD)
        _opt(args, d, "--bpm", "bpm")
        _opt(args, d, "--duration", "duration")
    elif verb == "generate":
        prompt = d.value("prompt", TEXT_BAD)[0]
        args = ["generate", prompt, "--model", str(model), "--out", out + d.pick([".wav", ".wav", ".mp4"]), "--quiet"]
        args += ["--duration", d.value("duration")[0], "--steps", d.value("steps")[0]]
        for flag, kind in (("--seed", "seed"), ("--cfg", "cfg"), ("--bpm", "bpm")):
            _opt(args, d, flag, kind, p_omit=0.5)
        _opt(args, d, "--melody", "notes", TEXT_BAD, p_omit=0.6)
        _opt(args, d, "--dynamics", "shape", TEXT_BAD, p_omit=0.6)
        if d.chance(0.15):
            args += ["--controls-from", str(d.pick([files["good.wav"], files["truncated.wav"], files["one_hz.wav"], files["random.wav"]]))]
    elif verb == "extract":
        args = ["controls", "extract", str(d.pick([p for n, p in files.items() if n.endswith((".wav", ".mp3", ".flac"))])), "--out", out + ".npz"]
    elif verb == "train":  # always at least one bad override: a valid one would start a training run
        key = d.pick(["train.max_steps", "data.batch_size", "train.lr", "train.max_minutes", "data.num_workers", "train.seed", "model.heads"])
        args = ["train", "generator", "debug", f"{key}={d.bad_value([*NUMBER_TRAIN_BAD])}", "--out", out]
    elif verb == "build":  # likewise: a valid build renders the music21 corpus
        flag = d.pick(["--limit-works", "--workers", "--max-clips", "--variants", "--clip-seconds", "--seed"])
        args = ["data", "build", "--out", out, flag, d.bad_value(["-1", "0", "-100", "1e30", "abc", "nan", "2.5", "9" * 30])]
        if flag == "--clip-seconds" and args[-1] in ("2.5",):
            args[-1] = "-2.5"
    elif verb == "index":
        args = ["data", "index", str(files["odd_dir"]), "--out", out, "--quiet"]
        _opt(args, d, "--clip-seconds", "duration", p_omit=0.5)
    elif verb == "vocode":
        args = ["vocode", str(files[d.pick(["mel_ok.npy", "mel_nan.npy", "mel_1d.npy", "mel_obj.npy", "mel_huge_header.npy", "mel_text.npy"])]), "--out", out + ".wav", "--griffin-lim"]
    else:  # serve: one bad value that is checked before anything loads (a valid one would serve forever)
        flag, value = d.pick([("--port", d.pick(["-1", "70000", "1e9", "abc"])), ("--queue", d.pick(["-1", "1e9", "100000"])),
                              ("--max-concurrent", d.pick(["0", "-2", "1000"])), ("--max-duration", d.pick(["0", "-1", "nan", "1e9"])),
                              ("--max-upload-mb", d.pick(["0", "-5", "inf", "1e12"])), ("--threads", d.pick(["-1", "100000"]))])
        args = ["serve", "--root", str(work / "studio"), "--model", str(model), "--no-warmup", flag, value]
    return args


NUMBER_TRAIN_BAD = ["1e30", "-1", "-5", "2.5", "NaN", "Infinity", "-Infinity", "abc", "[1]", "{}", "true", "1e13", "-1e13"]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cli_fuzz")
    work = root / "work"
    files = write_files(work / "in", odd_audio_files())
    files["odd_dir"] = work / "odd"
    write_files(files["odd_dir"], {k: v for k, v in odd_audio_files().items() if k != "good.wav"})
    csvs = {
        "rhythm_ok.csv": "time,downbeat\n0,1\n0.5,0\n1,0\n",
        "rhythm_huge.csv": "time,downbeat\n0,1\n0.5,0\n1e12,0\n",
        "rhythm_bad.csv": "time,downbeat\n0,1\nabc,0\n",
        "rhythm_many.csv": "time,downbeat\n" + "".join(f"{k * 0.001:.3f},0\n" for k in range(120_000)),
    }
    files.update(write_files(work / "in", {k: v.encode() for k, v in csvs.items()}))
    mels = {
        "mel_ok.npy": np.zeros((128, 40), np.float32) - 5, "mel_nan.npy": np.full((128, 40), np.nan, np.float32),
        "mel_1d.npy": np.zeros(40, np.float32), "mel_obj.npy": np.array([object()] * 3, dtype=object),
    }
    for name, arr in mels.items():
        np.save(work / "in" / name, arr, allow_pickle=True)
        files[name] = work / "in" / name
    header = work / "in" / "mel_huge_header.npy"
    with open(header, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (128, 10**10)})
        fh.write(b"\0" * 64)
    files["mel_huge_header.npy"] = header
    (work / "in" / "mel_text.npy").write_text("not numpy")
    files["mel_text.npy"] = work / "in" / "mel_text.npy"
    return {"root": root, "work": work, "files": files}


def test_cli_fuzz(sandbox, fuzz_model, capsys, monkeypatch) -> None:
    root, work, files = sandbox["root"], sandbox["work"], sandbox["files"]
    monkeypatch.chdir(work)
    before = snapshot(root, skip=work)
    d = Draw(seed=20)
    failures, ok, refused, slowest = [], 0, 0, (0.0, None)
    for i in range(N_CASES):
        args = _case(i, d, work, fuzz_model, files)
        t0 = time.perf_counter()
        try:
            with time_limit():
                rc = main(args)
        except Hang as exc:
            failures.append(f"{args}: {exc}")
            continue
        elapsed = time.perf_counter() - t0
        slowest = max(slowest, (elapsed, args[:3]), key=lambda x: x[0])
        out, err = capsys.readouterr()
        lines = [line for line in err.splitlines() if line.strip()]
        errors = [k for k, line in enumerate(lines) if line.startswith("error: ")]
        if "Traceback" in out + err:
            failures.append(f"{args}: a traceback\n{err[-2000:]}")
        elif rc == 0:
            ok += 1
        elif rc != 2 or not errors:
            failures.append(f"{args}: exit {rc} without one error line\n{err[-800:]}")
        elif "unexpected" in lines[errors[0]] or errors[0] + 1 >= len(lines) or not lines[errors[0] + 1].startswith("hint: "):
            failures.append(f"{args}: not a clear error with a hint\n{err[-800:]}")
        else:
            refused += 1
    assert not failures, f"{len(failures)} of {N_CASES} CLI cases failed:\n" + "\n\n".join(failures[:15])
    assert snapshot(root, skip=work) == before, "a CLI case wrote outside its sandbox folder"
    assert ok >= 15 and refused >= 60, (ok, refused)  # the draw exercised both valid results and refusals
    print(f"CLI fuzz: {N_CASES} cases, {ok} valid results, {refused} clear refusals; slowest {slowest[0]:.2f} s {slowest[1]}")
