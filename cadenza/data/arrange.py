"""Arrange a score for rendering: tempo, transposition, instruments, dynamics, accompaniment, drums.

Each variant of a work is one ``Arrangement``: a ``pretty_midi.PrettyMIDI`` plus the facts
the captions and the exact controls need (tempo, key, meter, beat times, instruments). All
choices come from the ``numpy`` generator passed in, so a (seed, work, variant) triple always
gives the same music. Tempo is constant within a variant so beat times are exact.

Monophonic tunes get a simple accompaniment derived from their own melody: one chord per bar
(or half bar) chosen among the diatonic triads of the tune's key and mode by how much of the
bar's melody it contains, played as a bass line plus a pad, block chords, oom-pah or arpeggios.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pretty_midi

from cadenza.data.score import MODE_STEPS, ScoreData

# ------------------------------------------------------------------ instrument palettes
INSTRUMENT_NAMES: dict[int, str] = {
    0: "piano", 1: "bright piano", 4: "electric piano", 6: "harpsichord", 8: "celesta", 11: "vibraphone",
    12: "marimba", 16: "organ", 19: "church organ", 21: "accordion", 22: "harmonica", 24: "nylon guitar",
    25: "acoustic guitar", 26: "jazz guitar", 32: "acoustic bass", 33: "electric bass", 35: "fretless bass",
    38: "synth bass", 40: "violin", 41: "viola", 42: "cello", 43: "contrabass", 46: "harp", 48: "strings",
    49: "slow strings", 52: "choir", 53: "voice pad", 56: "trumpet", 57: "trombone", 58: "tuba", 60: "french horn",
    61: "brass section", 65: "alto sax", 66: "tenor sax", 68: "oboe", 70: "bassoon", 71: "clarinet", 73: "flute",
    74: "recorder", 75: "pan flute", 80: "square lead synth", 81: "saw lead synth", 88: "new age pad",
    89: "warm pad", 90: "polysynth", 91: "choir pad", 94: "halo pad", 105: "banjo", 108: "kalimba",
}
MELODY_PROGRAMS = (0, 4, 11, 12, 21, 22, 24, 25, 40, 46, 56, 65, 68, 71, 73, 74, 75, 80, 81, 105, 108, 6, 19, 52)
CHORD_PROGRAMS = (0, 4, 6, 16, 19, 24, 25, 26, 46, 48, 49, 52, 88, 89, 90, 91, 94, 21)
BASS_PROGRAMS = (32, 33, 35, 38, 42, 43, 58, 70, 0)
ENSEMBLES: dict[str, tuple[int, ...]] = {  # top voice first; cycled when a piece has more parts
    "piano": (0,),
    "string quartet": (40, 40, 41, 42, 43),
    "string orchestra": (48, 48, 49, 48, 43),
    "choir": (52, 52, 53, 52, 52),
    "organ": (19,),
    "brass": (56, 60, 57, 58),
    "woodwinds": (73, 68, 71, 70),
    "synths": (81, 90, 89, 38),
    "guitars": (25, 24, 24, 33),
    "harpsichord": (6,),
}
DRUM_KICK, DRUM_SIDESTICK, DRUM_SNARE, DRUM_CLAP = 36, 37, 38, 39
DRUM_HATS = (42, 51, 70, 54)  # closed hi-hat, ride, maracas, tambourine
DRUM_CRASH = 49

ACCOMPANIMENT_STYLES = ("pad", "block", "oompah", "arpeggio")
DYNAMICS_STYLES = ("steady", "terraced", "swelling", "building", "fading", "varied")
DRUM_STYLES = ("backbeat", "light", "four-on-the-floor")


def instrument_name(program: int) -> str:
    """A short, caption-friendly name of a General MIDI program."""
    return INSTRUMENT_NAMES.get(int(program), pretty_midi.program_to_instrument_name(int(program)).lower())


def tempo_range(beat_q: float) -> tuple[float, float]:
    """BPM range in the meter's own beat unit (dotted quarters in 6/8, halves in 4/2)."""
    if beat_q >= 1.99:
        return 44.0, 100.0
    if beat_q >= 1.49:
        return 48.0, 120.0
    if beat_q <= 0.51:
        return 80.0, 180.0
    return 60.0, 160.0


@dataclass
class Arrangement:
    """One rendered variant of a work, as MIDI plus what captions and controls need."""

    midi: pretty_midi.PrettyMIDI
    beats: np.ndarray  # (K, 2) time_s, is_downbeat, from 0 at the window start
    duration: float  # seconds until the last note ends
    bpm: float  # in the meter's beat unit
    meter: str
    tonic_pc: int
    mode: str
    transpose: int
    programs: list[int]  # non-drum programs, melody first
    roles: list[str]  # "melody", "harmony", "bass" or "voice"
    drums: bool
    drum_style: str | None
    dynamics_style: str
    accompaniment: str | None  # style of the generated accompaniment, None if parts as written
    ensemble: str | None
    start_q: float
    info: dict = field(default_factory=dict)

    @property
    def instruments(self) -> list[str]:
        """Distinct instrument names, melody first."""
        seen: list[str] = []
        for p in self.programs:
            name = instrument_name(p)
            if name not in seen:
                seen.append(name)
        return seen

    def melodic_notes(self) -> np.ndarray:
        """(K, 3) rows of start_s, end_s, pitch of every non-drum note."""
        rows = [
            np.array([[n.start, n.end, n.pitch] for n in inst.notes], dtype=np.float64).reshape(-1, 3)
            for inst in self.midi.instruments
            if not inst.is_drum
        ]
        return np.concatenate(rows) if rows else np.zeros((0, 3))


# ------------------------------------------------------------------ harmony
def _triads(tonic: int, mode: str) -> tuple[list[str], np.ndarray]:
    """Candidate chords (names, (C, 12) pitch-class membership, root pc in column order)."""
    steps = MODE_STEPS.get(mode, MODE_STEPS["major"])
    names, rows, roots = [], [], []
    for label, degree in (("I", 0), ("V", 4), ("IV", 3), ("vi", 5), ("ii", 1)):
        tones = [(tonic + steps[(degree + k) % 7]) % 12 for k in (0, 2, 4)]
        names.append(label)
        roots.append(tones[0])
        rows.append(tones)
    if mode in ("minor", "aeolian"):  # harmonic minor: a major dominant leads home
        root = (tonic + 7) % 12
        names.append("V+")
        roots.append(root)
        rows.append([root, (root + 4) % 12, (root + 7) % 12])
    member = np.zeros((len(rows), 12))
    for i, tones in enumerate(rows):
        member[i, tones] = 1.0
    return names, member, np.array(roots)


def harmonize(notes: np.ndarray, bounds: np.ndarray, tonic: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Choose one chord per segment ``bounds[i]..bounds[i+1]`` (quarters) for a melody.

    Returns (S,) root pitch classes and (S, 3) chord pitch classes (root, third, fifth).
    Scores each candidate by the melody time it covers minus half the time it clashes,
    with a small prior for I > V > IV and the tonic preferred at the start and the end.
    """
    names, member, roots = _triads(tonic, mode)
    starts, ends = bounds[:-1], bounds[1:]
    n_on, n_off = notes[:, 0], notes[:, 0] + notes[:, 1]
    overlap = np.clip(np.minimum(ends[:, None], n_off[None]) - np.maximum(starts[:, None], n_on[None]), 0, None)
    pcs = np.zeros((len(notes), 12))
    pcs[np.arange(len(notes)), notes[:, 2].astype(int) % 12] = 1.0
    weight = overlap @ pcs  # (S, 12) melody time per pitch class
    total = weight.sum(axis=1, keepdims=True)
    score = 1.5 * weight @ member.T - 0.5 * (total - weight @ member.T)
    prior = np.array([0.3, 0.2, 0.15, 0.05, 0.0, 0.22][: len(names)])
    score = score / np.maximum(total, 1e-9) + prior
    score[0, 0] += 1.0
    score[-1, 0] += 1.0
    choice = score.argmax(axis=1)
    empty = total[:, 0] < 1e-9
    for i in np.flatnonzero(empty):  # a bar of rests keeps the previous chord
        choice[i] = choice[i - 1] if i > 0 else 0
    tones = np.stack([np.flatnonzero(member[c]) for c in choice])
    root = roots[choice]
    # order each chord as root, third, fifth by interval above the root
    rel = (tones - root[:, None]) % 12
    order = np.argsort(rel, axis=1)
    return root, np.take_along_axis(tones, order, axis=1)


def _place(pc: np.ndarray, low: int) -> np.ndarray:
    """The lowest MIDI pitch with pitch class ``pc`` at or above ``low``."""
    return low + (pc - low) % 12


def accompaniment(
    sd: ScoreData, tonic: int, mode: str, style: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(harmony notes, bass notes) as (K, 3) rows of onset_q, duration_q, pitch (untransposed)."""
    downs = sd.bar_starts()
    bar_q = float(np.median(np.diff(downs))) if len(downs) > 1 else sd.beat_q * sd.beats_per_bar
    bounds = [0.0] + [d for d in downs if d > 1e-6]
    if bar_q >= 4 - 1e-6 and sd.beats_per_bar % 2 == 0:  # long bars: change chord every half bar
        bounds = sorted(set(bounds) | {d + bar_q / 2 for d in downs if d + bar_q / 2 < sd.end_q - 1e-6})
    bounds = np.array(sorted(set(np.round(bounds, 6))) + [sd.end_q])
    melody = sd.parts[0].notes
    roots, chords = harmonize(melody, bounds, tonic, mode)
    beats = sd.beats_q
    sub = sd.beat_q / 3 if abs(sd.beat_q - 1.5) < 1e-6 else sd.beat_q / 2
    chord_low = int(rng.integers(52, 58))
    harm: list[tuple[float, float, int]] = []
    bass: list[tuple[float, float, int]] = []
    for i in range(len(bounds) - 1):
        s, e = float(bounds[i]), float(bounds[i + 1])
        if e - s < 1e-6:
            continue
        root_pitch = int(_place(np.array(roots[i]), 40))
        voicing = [int(_place(np.array(chords[i][0]), chord_low))]
        for pc in chords[i][1:]:
            voicing.append(int(_place(np.array(pc), voicing[-1] + 1)))
        seg_beats = beats[(beats >= s - 1e-6) & (beats < e - 1e-6)]
        if len(seg_beats) == 0:
            seg_beats = np.array([s])
        if style == "pad":
            harm += [(s, e - s, p) for p in voicing]
            bass.append((s, e - s, root_pitch))
        elif style == "block":
            nxt = np.append(seg_beats[1:], e)
            for b, b2 in zip(seg_beats, nxt):
                harm += [(float(b), float(b2 - b) * 0.9, p) for p in voicing]
            bass.append((s, e - s, root_pitch))
        elif style == "oompah":
            nxt = np.append(seg_beats[1:], e)
            for j, (b, b2) in enumerate(zip(seg_beats, nxt)):
                if j % 2 == 0 or (len(seg_beats) == 3 and j == 0):
                    bass.append((float(b), float(b2 - b) * 0.9, root_pitch if j % 4 == 0 else root_pitch + 7))
                else:
                    harm += [(float(b), float(b2 - b) * 0.8, p) for p in voicing]
            if len(seg_beats) == 1:
                harm += [(s + (e - s) / 2, (e - s) / 2 * 0.8, p) for p in voicing]
        else:  # arpeggio over the subdivision
            figure = [voicing[0] - 12, voicing[2] - 12, voicing[0], voicing[1]]
            times = np.arange(s, e - 1e-6, sub)
            for j, t in enumerate(times):
                harm.append((float(t), float(min(sub, e - t)) * 0.95, figure[j % 4]))
            bass.append((s, e - s, root_pitch))
    as_arr = lambda rows: np.array(rows, dtype=np.float64).reshape(-1, 3)  # noqa: E731
    return as_arr(harm), as_arr(bass)


# ------------------------------------------------------------------ dynamics
def dynamics_curve(
    bar_starts_s: np.ndarray, end_s: float, style: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Breakpoints (times, levels in [0, 1]) of a loudness curve built phrase by phrase.

    Phrases are 2 or 4 bars, so a 6 s clip usually sees a change; the style decides the
    shape of each phrase (flat, a step, a rise, a fall, a rise and fall).
    """
    starts = bar_starts_s[bar_starts_s < end_s]
    if len(starts) == 0 or starts[0] > 1e-6:
        starts = np.concatenate([[0.0], starts])
    phrase_bars = int(rng.choice([2, 4]))
    edges = np.append(starts[::phrase_bars], end_s)
    times: list[float] = []
    levels: list[float] = []
    level = float(rng.uniform(0.35, 0.75))
    for a, b in zip(edges[:-1], edges[1:]):
        shape = style
        if style == "varied":
            shape = str(rng.choice(["steady", "terraced", "swelling", "building", "fading"]))
        if shape == "steady":
            lo = hi = np.clip(level + rng.uniform(-0.05, 0.05), 0.3, 0.8)
        elif shape == "terraced":
            lo = hi = float(rng.uniform(0.1, 0.95))
        elif shape == "building":
            lo, hi = float(rng.uniform(0.05, 0.45)), float(rng.uniform(0.65, 1.0))
        elif shape == "fading":
            hi, lo = float(rng.uniform(0.05, 0.45)), float(rng.uniform(0.65, 1.0))
        else:  # swelling
            lo, hi = float(rng.uniform(0.05, 0.4)), float(rng.uniform(0.7, 1.0))
            times += [a, (a + b) / 2]
            levels += [lo, hi]
            continue
        times += [a, b - 1e-3]
        levels += [lo, hi]
    return np.array(times), np.clip(np.array(levels), 0.0, 1.0)


# ------------------------------------------------------------------ drums
def drum_notes(
    beats_s: np.ndarray, down: np.ndarray, beat_q: float, bpb: int, spq: float, style: str, rng: np.random.Generator
) -> np.ndarray:
    """(K, 3) rows of time_s, velocity scale (0-1), drum key for a pattern in the meter."""
    if len(beats_s) == 0:
        return np.zeros((0, 3))
    # position of each beat in its bar (beats before the first downbeat count back from it)
    idx = np.arange(len(beats_s))
    last_down = np.maximum.accumulate(np.where(down, idx, -1))
    first_down = int(np.argmax(down)) if down.any() else 0
    pos = np.where(last_down >= 0, idx - last_down, (idx - first_down) % max(bpb, 1))
    compound = abs(beat_q - 1.5) < 1e-6
    n_sub = 3 if compound else 2
    beat_len = beat_q * spq
    hat = int(rng.choice(DRUM_HATS))
    rows: list[np.ndarray] = []
    kick_mask = pos == 0
    if style == "four-on-the-floor" and not compound:
        kick_mask = np.ones_like(kick_mask)
    elif bpb == 4:
        kick_mask |= pos == 2
    rows.append(np.stack([beats_s[kick_mask], np.full(kick_mask.sum(), 1.0), np.full(kick_mask.sum(), DRUM_KICK)], 1))
    if bpb in (2, 4):
        snare_mask = pos % 2 == 1
    elif bpb == 3 and not compound:
        snare_mask = pos > 0
    else:
        snare_mask = np.zeros_like(pos, dtype=bool)
    snare_key = {"backbeat": DRUM_SNARE, "light": DRUM_SIDESTICK, "four-on-the-floor": DRUM_CLAP}[style]
    snare_vel = 0.6 if (bpb == 3 and not compound) else 0.9
    rows.append(
        np.stack([beats_s[snare_mask], np.full(snare_mask.sum(), snare_vel), np.full(snare_mask.sum(), snare_key)], 1)
    )
    sub_t = (beats_s[:, None] + np.arange(n_sub)[None] * beat_len / n_sub).ravel()
    sub_v = np.tile(np.array([0.8] + [0.45] * (n_sub - 1)), len(beats_s))
    if style == "four-on-the-floor" and not compound:  # open off-beat feel: hats between the kicks
        keep = np.tile(np.arange(n_sub) > 0, len(beats_s))
        sub_t, sub_v = sub_t[keep], sub_v[keep] + 0.2
    rows.append(np.stack([sub_t, sub_v, np.full(len(sub_t), hat)], 1))
    if style != "light":
        downs = beats_s[down]
        crash = downs[::8]
        rows.append(np.stack([crash, np.full(len(crash), 0.7), np.full(len(crash), DRUM_CRASH)], 1))
    out = np.concatenate(rows)
    return out[np.argsort(out[:, 0], kind="stable")]


# ------------------------------------------------------------------ the arrangement
def _choose_tempo(sd: ScoreData, rng: np.random.Generator) -> float:
    lo, hi = tempo_range(sd.beat_q)
    # keep the typical note between 0.1 s and 1.5 s long, whatever the notation's note values
    durs = np.concatenate([p.notes[:, 1] for p in sd.parts])
    dq = float(np.median(durs)) if len(durs) else 1.0
    fast_cap = 60.0 * dq / (0.11 * sd.beat_q)
    slow_cap = 60.0 * dq / (1.5 * sd.beat_q)
    lo2, hi2 = max(lo, slow_cap), min(hi, fast_cap)
    if lo2 > hi2:
        lo2, hi2 = (lo, max(lo, min(hi, fast_cap))) if fast_cap < lo else (min(hi, slow_cap), hi)
    if sd.metronome_bpm and abs(sd.metronome_bpm - 120.0) > 1e-6:  # 120 is music21's default, not a marking
        hint = sd.metronome_bpm / sd.beat_q * float(rng.uniform(0.85, 1.15))
        return float(np.clip(hint, lo2, hi2))
    return float(rng.uniform(lo2, hi2))


def arrange(
    sd: ScoreData,
    rng: np.random.Generator,
    max_seconds: float,
    random_start: bool = False,
    drum_probability: float = 0.4,
) -> Arrangement:
    """Make one variant of ``sd`` lasting at most ``max_seconds`` (from a random bar if asked)."""
    bpm = _choose_tempo(sd, rng)
    spq = 60.0 / (bpm * sd.beat_q)  # seconds per quarter note
    window_q = max_seconds / spq
    bars = sd.bar_starts()
    start_q = 0.0
    if random_start and sd.end_q > window_q and len(bars):
        candidates = bars[bars <= sd.end_q - window_q]
        if len(candidates):
            start_q = float(rng.choice(candidates))
    end_q = min(sd.end_q, start_q + window_q)

    # transposition: a random shift, then octaves so the top part sits in a singable range
    shift = int(rng.integers(-5, 7))
    top = sd.parts[0].notes[:, 2] + shift
    median = float(np.median(top))
    shift += int(12 * np.round((70.0 - median) / 12.0)) if not 58 <= median <= 82 else 0
    tonic = (sd.tonic_pc + shift) % 12

    dyn_style = str(rng.choice(DYNAMICS_STYLES))
    ensemble = None
    acc_style = None
    parts: list[tuple[str, int, np.ndarray]] = []  # role, program, notes (onset_q, dur_q, pitch)
    if sd.is_monophonic:
        acc_style = str(rng.choice(ACCOMPANIMENT_STYLES))
        harm, bass = accompaniment(sd, sd.tonic_pc, sd.mode, acc_style, rng)
        melody_prog = int(rng.choice(MELODY_PROGRAMS))
        chord_prog = int(rng.choice([p for p in CHORD_PROGRAMS if p != melody_prog]))
        bass_prog = int(rng.choice(BASS_PROGRAMS))
        parts = [("melody", melody_prog, sd.parts[0].notes), ("harmony", chord_prog, harm), ("bass", bass_prog, bass)]
    else:
        ensemble = str(rng.choice(list(ENSEMBLES) + ["mixed"]))
        for i, part in enumerate(sd.parts):
            if ensemble == "mixed":
                pool = CHORD_PROGRAMS if part.is_chordal else MELODY_PROGRAMS
                prog = int(rng.choice(pool))
            else:
                progs = ENSEMBLES[ensemble]
                prog = progs[min(i, len(progs) - 1)] if len(progs) > 1 else progs[0]
            parts.append(("melody" if i == 0 else "voice", prog, part.notes))

    # notes into the window, seconds from its start
    legato = float(rng.uniform(0.8, 1.0))
    bar_s = (bars - start_q) * spq
    curve_t, curve_v = dynamics_curve(bar_s[bar_s >= 0], (end_q - start_q) * spq, dyn_style, rng)
    midi = pretty_midi.PrettyMIDI(initial_tempo=60.0 / spq)
    role_gain = {"melody": 12, "voice": 0, "harmony": -14, "bass": -4}
    beat_in_q = sd.beats_q
    programs, roles = [], []
    for role, prog, notes in parts:
        on, dur, pitch = notes[:, 0], notes[:, 1], notes[:, 2].astype(int) + shift
        keep = (on >= start_q - 1e-6) & (on < end_q - 1e-6) & (pitch >= 21) & (pitch <= 108)
        if not keep.any():
            continue
        on, dur, pitch = on[keep], dur[keep], pitch[keep]
        start_s = (on - start_q) * spq
        window_s = (end_q - start_q) * spq
        end_s = np.minimum(on + dur * legato, end_q) - start_q
        end_s = np.minimum(np.maximum(end_s * spq, start_s + 0.05), window_s)
        on_beat = np.isin(np.round(on, 4), np.round(sd.bar_starts(), 4))
        level = np.interp(start_s, curve_t, curve_v)
        vel = 36 + 80 * level + role_gain[role] + 8 * on_beat + rng.normal(0, 3, len(on))
        vel = np.clip(np.rint(vel), 15, 127).astype(int)
        inst = pretty_midi.Instrument(program=prog, name=role)
        inst.notes = [pretty_midi.Note(int(v), int(p), float(a), float(b)) for v, p, a, b in zip(vel, pitch, start_s, end_s)]
        midi.instruments.append(inst)
        programs.append(prog)
        roles.append(role)

    in_window = (beat_in_q >= start_q - 1e-6) & (beat_in_q < end_q - 1e-6)
    beats_s = (beat_in_q[in_window] - start_q) * spq
    down = sd.downbeat[in_window]
    drums = bool(rng.random() < drum_probability)
    drum_style = None
    if drums:
        drum_style = str(rng.choice(DRUM_STYLES))
        rows = drum_notes(beats_s, down, sd.beat_q, sd.beats_per_bar, spq, drum_style, rng)
        window_s = (end_q - start_q) * spq
        rows = rows[rows[:, 0] < window_s - 0.02]
        level = np.interp(rows[:, 0], curve_t, curve_v)
        vel = np.clip(np.rint(rows[:, 1] * (50 + 70 * level)), 10, 127).astype(int)
        kit = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
        kit.notes = [
            pretty_midi.Note(int(v), int(k), float(t), min(float(t) + 0.1, window_s)) for t, v, k in zip(rows[:, 0], vel, rows[:, 2])
        ]
        midi.instruments.append(kit)
    all_ends = [n.end for inst in midi.instruments for n in inst.notes]
    duration = float(max(all_ends)) if all_ends else 0.0
    beats = np.stack([beats_s, down.astype(np.float64)], axis=1) if len(beats_s) else np.zeros((0, 2))
    return Arrangement(
        midi=midi, beats=beats, duration=duration, bpm=float(bpm), meter=sd.meter, tonic_pc=int(tonic),
        mode=sd.mode, transpose=shift, programs=programs, roles=roles, drums=drums, drum_style=drum_style,
        dynamics_style=dyn_style, accompaniment=acc_style, ensemble=ensemble, start_q=start_q,
        info={"legato": legato},
    )
