"""Python API fuzz: seeded malformed arguments to ``Cadenza.generate / continue_audio / inpaint / extract_controls / evaluate``.

Each call must return a valid result or raise a one-line ``CadenzaError`` (nothing else), within
``CASE_LIMIT_S``. Arguments come from the contract's pools: numbers, strings, wrong types, arrays
of the wrong shape or dtype, out-of-range and non-finite values, truncated or odd audio.
"""

from __future__ import annotations

import time

import numpy as np
from conftest import Hang, time_limit
from contract import TEXT_BAD, Draw

from cadenza.controls.base import ControlSet
from cadenza.errors import CadenzaError

N_CASES = 150
SR = 22050


def _audio(d: Draw):
    """A waveform argument: usually fine, sometimes malformed."""
    if not d.chance(0.3):
        return (0.1 * np.sin(np.arange(int(SR * d.pick([0.6, 1.0]))) * 0.05)).astype(np.float32)
    return d.pick([
        np.zeros(0, np.float32), np.full(SR, np.nan, np.float32), np.zeros((3, 4, 5), np.float32), np.array(["a"] * 100),
        np.array([object()] * 100, dtype=object), [0.1] * 100, "audio.wav", None, np.zeros((2, SR), np.float32), np.ones(10, np.complex64),
        np.full(SR, np.inf), np.zeros(3, np.float32), np.zeros((SR, 2), np.float32), 5,
    ])


def _control(d: Draw, name: str, n_frames: int):
    """A control argument of any of the accepted forms, well-formed or not."""
    good = {
        "melody": ["C4:1 E4:1", np.full(n_frames, 3), np.eye(12, dtype=np.float32)[np.zeros(n_frames, int)]],
        "dynamics": ["crescendo", "swell:-35:20", np.full(n_frames, -20.0)],
        "rhythm": [None],
    }[name]
    if not d.chance(0.5):
        return d.pick(good)
    return d.pick([
        *TEXT_BAD[:12], np.full(n_frames, 1e16), np.full(n_frames, np.nan), np.zeros(n_frames + 7), np.zeros((n_frames, 5)),
        np.array([object()] * n_frames, dtype=object), ["a"] * n_frames, np.full(n_frames, 99), {"a": 1}, 3.5, object(), b"bytes",
        [[1, 2], [3]], ControlSet.empty(5), np.zeros((0,)),
    ])


def _kwargs(d: Draw, n_frames: int) -> dict:
    kw = {"steps": d.python_value("steps"), "seed": d.python_value("seed")}
    for key, kind in (("cfg", "cfg"), ("bpm", "bpm")):
        if d.chance(0.4):
            kw[key] = d.python_value(kind)
    for name in ("melody", "dynamics"):
        if d.chance(0.35):
            kw[name] = _control(d, name, n_frames)
    if d.chance(0.15):
        kw["meter"] = d.pick(["4", 3, "6/8", "bogus", 0, -1, None, 1e9])
    if d.chance(0.1):
        kw["sampler"] = d.pick(["ddim", "nope", 5, None])
    return kw


def _call(gen, d: Draw):
    """One API call, described for the failure report."""
    what = d.pick(["generate", "generate", "generate", "continue_audio", "inpaint", "extract_controls", "evaluate"])
    n_frames = 87  # frames of 1 s: arrays sized for the default fuzz duration
    if what == "generate":
        kw = {"duration": d.python_value("duration"), **_kwargs(d, n_frames)}
        if d.chance(0.1):
            kw["seed"] = d.pick([[0, 1], [0, "x"], [], list(range(100)), np.arange(2)])
        prompt = d.pick(["calm", "", "♫" * 50, None, 5, "x" * 5000]) if d.chance(0.2) else "calm piano"
        return what, kw, lambda: gen.generate(prompt, **kw)
    if what == "continue_audio":
        kw = {"duration": d.python_value("duration") if d.chance(0.5) else 1.5, "sample_rate": d.pick([SR, SR, 16000, 1e12, 0, "abc", -1]), **_kwargs(d, 0)}
        kw.pop("melody", None), kw.pop("dynamics", None)
        audio = _audio(d)
        return what, kw, lambda: gen.continue_audio(audio, "more", **kw)
    if what == "inpaint":
        span = d.pick([(0.1, 0.4), (0.4, 0.1), ("a", 1), (-1, 0.2), (0.1, 1e9), (float("nan"), 0.3), (0, 0.5)])
        kw = {"sample_rate": d.pick([SR, SR, 44100, 1e12, "x"]), **_kwargs(d, 0)}
        kw.pop("melody", None), kw.pop("dynamics", None)
        audio = _audio(d)
        return what, {**kw, "span": span}, lambda: gen.inpaint(audio, span[0], span[1], "fix", **kw)
    if what == "extract_controls":
        audio, sr = _audio(d), d.pick([SR, SR, 8000, 1e12, 0, -5, "abc", 22050.5, None, 10**20])
        return what, {"sr": sr}, lambda: gen.extract_controls(audio, sr)
    audio, sr = _audio(d), d.pick([SR, SR, 1e12, "x"])
    controls = d.pick([None, ControlSet.empty(87), "not a control set", 5])
    kw = {k: v for k, v in _kwargs(d, 87).items() if k in ("melody", "dynamics", "bpm", "meter")}
    return what, {"sr": sr, **kw}, lambda: gen.evaluate(audio, sr, controls, **kw)


def _valid(what: str, result) -> bool:
    if what == "extract_controls":
        return isinstance(result, ControlSet)
    if what == "evaluate":
        return isinstance(result, dict) and "beat_f1" in result
    wave, sr = result
    return sr == SR and isinstance(wave, np.ndarray) and wave.size > 0 and bool(np.isfinite(wave).all())


def test_api_fuzz(fuzz_gen) -> None:
    d = Draw(seed=21, bad=0.2)
    failures, ok, refused = [], 0, 0
    for _ in range(N_CASES):
        what, kw, call = _call(fuzz_gen, d)
        desc = f"{what}({', '.join(f'{k}={str(v)[:40]!s}' for k, v in kw.items())})"
        t0 = time.perf_counter()
        try:
            with time_limit():
                result = call()
        except Hang as exc:
            failures.append(f"{desc}: {exc}")
            continue
        except CadenzaError as err:
            if not err.message or "\n" in str(err) or len(str(err)) > 600:
                failures.append(f"{desc}: not a one-line error: {str(err)[:300]!r}")
            else:
                refused += 1
            continue
        except BaseException as exc:  # noqa: BLE001 - exactly what the fuzz is looking for
            failures.append(f"{desc}: raw {type(exc).__name__}: {str(exc)[:200]}")
            continue
        if not _valid(what, result):
            failures.append(f"{desc}: returned something invalid ({type(result).__name__})")
        else:
            ok += 1
        assert time.perf_counter() - t0 < 30
    assert not failures, f"{len(failures)} of {N_CASES} API cases failed:\n" + "\n".join(failures[:25])
    assert ok >= 15 and refused >= 60, (ok, refused)
    print(f"API fuzz: {N_CASES} cases, {ok} valid results, {refused} clear refusals")
