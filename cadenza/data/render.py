"""Render ``pretty_midi`` arrangements to 22.05 kHz mono audio with TinySoundFont (offline).

The synthesiser runs straight at the canonical rate, so no resampling is needed. One
``Synth`` per process and SoundFont is kept and reset between renders (loading FluidR3_GM
takes a quarter of a second); every render starts from silence, so output depends only on
the MIDI. A small synthetic room (exponentially decaying noise) can be mixed in, since
TinySoundFont itself renders dry.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pretty_midi
from scipy.signal import fftconvolve

from cadenza.audio.format import SAMPLE_RATE
from cadenza.errors import CadenzaError

log = logging.getLogger(__name__)

FLUID_R3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
DRUM_CHANNEL = 9


def timgm6mb_path() -> Path:
    """The small General MIDI SoundFont shipped inside pretty_midi (always present)."""
    return Path(os.path.dirname(pretty_midi.__file__)) / "TimGM6mb.sf2"


def resolve_soundfont(choice: str | os.PathLike | None, prefer_large: bool) -> tuple[Path, str]:
    """(path, short name) of the SoundFont to use.

    ``choice`` may be a path, "timgm6mb", "fluidr3" or None (the preset's default: FluidR3_GM
    for the larger presets when installed, else TimGM6mb with a warning).
    """
    if choice is not None and str(choice).lower() not in ("timgm6mb", "fluidr3"):
        path = Path(choice)
        if not path.is_file():
            raise CadenzaError(f"SoundFont {path} not found", "pass an existing .sf2 file, 'timgm6mb' or 'fluidr3'")
        return path, path.stem
    want_large = prefer_large if choice is None else str(choice).lower() == "fluidr3"
    if want_large:
        if FLUID_R3.is_file():
            return FLUID_R3, "FluidR3_GM"
        if choice is not None:
            raise CadenzaError(f"{FLUID_R3} not found", "install the Debian package fluid-soundfont-gm, or use --soundfont timgm6mb")
        log.warning("FluidR3_GM not installed (%s); falling back to TimGM6mb", FLUID_R3)
    return timgm6mb_path(), "TimGM6mb"


@lru_cache(maxsize=2)
def _synth(path: str):
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
    try:
        sfid = synth.sfload(path)
    except Exception as exc:
        raise CadenzaError(f"cannot load SoundFont {path} ({exc})", "pass a valid .sf2 file") from None
    return synth, sfid


def _events(midi: pretty_midi.PrettyMIDI) -> tuple[np.ndarray, list[tuple[int, int, bool]]]:
    """Sorted (E, 4) rows of sample, kind (0 off, 1 on), channel, key|velocity and channel programs."""
    channels: list[tuple[int, int, bool]] = []  # (channel, program, is_drum)
    rows = []
    free = [c for c in range(16) if c != DRUM_CHANNEL]
    assigned: dict[tuple[int, bool], int] = {}
    for inst in midi.instruments:
        if not inst.notes:
            continue
        if inst.is_drum:
            chan = DRUM_CHANNEL
        elif free:
            chan = free.pop(0)
        else:  # more parts than channels: share a channel with the same program, or the last one
            chan = assigned.get((inst.program, False), 15)
        assigned.setdefault((inst.program, inst.is_drum), chan)
        if all(c[0] != chan for c in channels):
            channels.append((chan, inst.program, inst.is_drum))
        n = np.array([[x.start, x.end, x.pitch, x.velocity] for x in inst.notes], dtype=np.float64)
        on = np.stack([np.rint(n[:, 0] * SAMPLE_RATE), np.ones(len(n)), np.full(len(n), chan), n[:, 2], n[:, 3]], 1)
        off = np.stack([np.rint(n[:, 1] * SAMPLE_RATE), np.zeros(len(n)), np.full(len(n), chan), n[:, 2], np.zeros(len(n))], 1)
        rows += [on, off]
    if not rows:
        return np.zeros((0, 5)), channels
    ev = np.concatenate(rows)
    # by time, note-offs before note-ons at the same sample (so a repeated note retriggers)
    ev = ev[np.lexsort((ev[:, 1], ev[:, 0]))]
    return ev, channels


def render_midi(midi: pretty_midi.PrettyMIDI, soundfont: str | os.PathLike, duration: float, tail: float = 1.0) -> np.ndarray:
    """Mono float32 audio of ``duration + tail`` seconds at 22.05 kHz."""
    synth, sfid = _synth(str(soundfont))
    for chan in range(16):
        synth.control_change(chan, 121, 0)  # reset controllers
    n_total = int(round((duration + tail) * SAMPLE_RATE))
    buf = np.zeros((n_total, 2), dtype=np.float32)
    view = memoryview(buf).cast("B")
    ev, channels = _events(midi)
    for chan, program, is_drum in channels:
        try:
            synth.program_select(chan, sfid, 128 if is_drum else 0, 0 if is_drum else int(program), is_drums=is_drum)
        except Exception:  # a SoundFont without this preset: fall back to piano / standard kit
            synth.program_select(chan, sfid, 128 if is_drum else 0, 0, is_drums=is_drum)
    pos = 0
    # the loop runs over event times (a few hundred per clip), never over samples
    times = ev[:, 0].astype(np.int64) if len(ev) else np.zeros(0, np.int64)
    boundaries = np.flatnonzero(np.diff(times)) + 1
    for group in np.split(np.arange(len(ev)), boundaries) if len(ev) else []:
        t = int(min(times[group[0]], n_total))
        if t > pos:
            synth.generate_simple(t - pos, buffer=view[pos * 8 : t * 8])
            pos = t
        if pos >= n_total:
            break
        for _, kind, chan, key, vel in ev[group]:
            if kind:
                synth.noteon(int(chan), int(key), int(vel))
            else:
                synth.noteoff(int(chan), int(key))
    if pos < n_total:
        synth.generate_simple(n_total - pos, buffer=view[pos * 8 :])
    synth.sounds_off()
    synth.generate_simple(SAMPLE_RATE // 4)  # let released voices die so the next render starts clean
    return buf.mean(axis=1)


def add_room(audio: np.ndarray, rng: np.random.Generator, wet: float, decay_s: float) -> np.ndarray:
    """Mix in a synthetic reverb tail: exponentially decaying noise, ``wet`` of the energy."""
    if wet <= 0:
        return audio
    n = int(decay_s * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.standard_normal(n).astype(np.float32) * np.exp(-6.9 * t / decay_s).astype(np.float32)  # -60 dB at decay_s
    ir[: int(0.01 * SAMPLE_RATE)] = 0.0  # a short pre-delay
    ir /= np.sqrt(np.sum(ir**2)) + 1e-9
    tail = fftconvolve(audio, ir)[: len(audio)].astype(np.float32)
    return ((1 - wet) * audio + wet * tail).astype(np.float32)
