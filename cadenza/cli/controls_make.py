"""``cadenza controls make ...``: write creator-made controls (melody, dynamics, rhythm) to files.

Each verb builds one control from something a person can type (a note string, a MIDI file,
a dynamics shape, a tempo and meter) and writes it as the v1 CSV of that control or as a
``.npz`` control set; ``all`` combines them into one ``.npz`` (or a folder of CSVs). The
file formats are documented in ``docs/control-formats.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console

from cadenza.audio.format import FRAME_RATE
from cadenza.controls.base import ControlSet
from cadenza.controls.files import (
    CURVES,
    DEFAULT_RANGE_DB,
    DEFAULT_START_DB,
    SHAPES,
    ControlFileWarning,
    dynamics_shape,
    parse_rhythm_csv,
    parse_shape_spec,
    read_dynamics,
    read_melody,
    read_rhythm,
    rhythm_from_bpm,
    save_csvs,
    stretch_rhythm,
    write_dynamics_csv,
    write_melody_csv,
    write_rhythm_csv,
)
from cadenza.errors import CadenzaError

console = Console(stderr=True)
DEFAULT_DURATION = 6.0  # the paper's clip length (512 frames ≈ 6 s)

app = typer.Typer(
    help=(
        "Make creator controls from typed notes, MIDI, dynamics shapes and tempo grids.\n\n"
        "Examples:\n\n"
        "  cadenza controls make melody --notes \"C4:1 E4:1 G4:2\" --bpm 100 --out melody.csv\n\n"
        "  cadenza controls make dynamics --shape swell --start-db -35 --range-db 20 --duration 6 --out dynamics.csv\n\n"
        "  cadenza controls make rhythm --bpm 120 --meter 4 --duration 6 --out rhythm.csv\n\n"
        "  cadenza controls make all --notes \"C4:1 E4:1 G4:2\" --dynamics crescendo --meter 4 --out controls.npz"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    add_completion=False,
)

_CSV_WRITERS: dict[str, Callable[[ControlSet, Path], Path]] = {
    "melody": write_melody_csv,
    "dynamics": write_dynamics_csv,
    "rhythm": write_rhythm_csv,
}


def _check_out(out: Path, kind: str) -> None:
    """Refuse an unsupported output name before doing any work."""
    suffix = out.suffix.lower()
    if suffix == ".npz" or (suffix == ".csv" and kind != "all") or (suffix == "" and kind == "all"):
        return
    if kind == "all":
        raise CadenzaError(f"{out}: cannot write combined controls as '{suffix}'", "use a .npz file, or a folder name (no extension) for melody/dynamics/rhythm CSVs")
    raise CadenzaError(f"{out}: unsupported output type '{suffix or '(none)'}'", f"end the name in .csv ({kind}.csv) or .npz")


def _write(cs: ControlSet, out: Path, kind: str) -> list[Path]:
    """Write by extension: ``.npz`` control set, ``.csv`` for one control, a folder of CSVs for ``all``."""
    if out.suffix.lower() == ".npz":
        return [cs.save(out)]
    if kind == "all":
        return save_csvs(cs, out)
    return [_CSV_WRITERS[kind](cs, out)]


def _summary(cs: ControlSet) -> str:
    parts = []
    for name, events, unit in (("melody", cs.melody_notes, "notes"), ("dynamics", cs.dynamics_points, "points"), ("rhythm", cs.beats, "beats")):
        mask = getattr(cs, f"{name}_mask")
        if mask.any():
            idx = mask.nonzero()[0]
            parts.append(f"{name} ({len(events)} {unit}, {idx[0] / FRAME_RATE:.2f}-{idx[-1] / FRAME_RATE:.2f} s)")
    return f"{', '.join(parts)}; clip {cs.n_frames} frames ({cs.duration:.2f} s)"


def _run(kind: str, out: Path, build: Callable[[], ControlSet]) -> None:
    """Build the controls, print any warnings about ignored content, write, and report."""
    _check_out(out, kind)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ControlFileWarning)
        cs = build()
    for w in caught:
        if issubclass(w.category, ControlFileWarning):
            console.print(f"[yellow]warning:[/] {w.message}", highlight=False)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for path in _write(cs, out, kind):
        console.print(f"wrote {path}", highlight=False)
    console.print(_summary(cs), highlight=False)


def _one_of(what: str, **given: object) -> str:
    chosen = [name for name, value in given.items() if value is not None]
    if len(chosen) != 1:
        flags = ", ".join(f"--{n.replace('_', '-')}" for n in given)
        raise CadenzaError(f"{what}: give exactly one of {flags} (got {len(chosen)})", f"e.g. --{next(iter(given)).replace('_', '-')} ...")
    return chosen[0]


def _shape_kwargs(spec: str, start_db: float | None, range_db: float | None, curve: str | None) -> dict:
    """A shape spec, with explicit --start-db/--range-db/--curve taking precedence over its fields."""
    kwargs = {"start_db": DEFAULT_START_DB, "range_db": DEFAULT_RANGE_DB, "curve": "linear", **parse_shape_spec(spec)}
    for name, value in (("start_db", start_db), ("range_db", range_db), ("curve", curve)):
        if value is not None:
            kwargs[name] = value
    return kwargs


@app.command(
    "melody",
    help=(
        "Make a melody control from a note string, a MIDI file or a melody.csv.\n\n"
        "Notes are PITCH:BEATS (C4 = middle C, F#3, Bb2, or MIDI 60); R:BEATS is a rest (free span).\n\n"
        "Examples:\n\n"
        "  cadenza controls make melody --notes \"C4:1 E4:1 G4:2\" --bpm 100 --out melody.csv\n\n"
        "  cadenza controls make melody --notes \"R:2 E4:0.5 D4:0.5 C4:1\" --duration 6 --out melody.npz\n\n"
        "  cadenza controls make melody --midi tune.mid --duration 6 --out melody.csv"
    ),
)
def melody(
    out: Path = typer.Option(..., "--out", "-o", help="Output file: .csv (melody.csv format) or .npz."),
    notes: str | None = typer.Option(None, "--notes", help='Note string, e.g. "C4:0.5 D4:0.5 E4:1 R:1 G4:2".'),
    midi: Path | None = typer.Option(None, "--midi", help="MIDI file; its highest sounding note per frame (drums ignored)."),
    csv: Path | None = typer.Option(None, "--csv", help="An existing melody.csv (e.g. to convert it to .npz)."),
    bpm: float = typer.Option(120.0, "--bpm", help="Tempo for --notes durations (beats per minute)."),
    start: float = typer.Option(0.0, "--start", help="Offset of the first --notes note in seconds."),
    duration: float | None = typer.Option(None, "--duration", help="Clip length in seconds (default: until the last note ends)."),
) -> None:
    source = _one_of("make melody", notes=notes, midi=midi, csv=csv)
    spec: str | Path = {"notes": notes, "midi": midi, "csv": csv}[source]  # type: ignore[assignment]
    _run("melody", out, lambda: read_melody(spec, bpm=bpm, start=start, duration=duration))


@app.command(
    "dynamics",
    help=(
        f"Make a dynamics control from a shape ({', '.join(SHAPES)}) or a dynamics.csv.\n\n"
        "A shape may carry its numbers: SHAPE:START_DB:RANGE_DB:CURVE, e.g. swell:-35:20:cosine; "
        "--start-db / --range-db / --curve override them. Levels are dBFS RMS (-30 quiet, -10 loud).\n\n"
        "Examples:\n\n"
        "  cadenza controls make dynamics --shape swell --start-db -35 --range-db 20 --duration 6 --out dynamics.csv\n\n"
        "  cadenza controls make dynamics --shape crescendo --curve tanh --start 2 --end 5 --duration 6 --out cresc.npz\n\n"
        "  cadenza controls make dynamics --shape fade --start-db -20 --out fade.csv"
    ),
)
def dynamics(
    out: Path = typer.Option(..., "--out", "-o", help="Output file: .csv (dynamics.csv format) or .npz."),
    shape: str | None = typer.Option(None, "--shape", help="crescendo, decrescendo, swell, fade or flat (optionally :START_DB:RANGE_DB:CURVE)."),
    csv: Path | None = typer.Option(None, "--csv", help="An existing dynamics.csv (e.g. to convert it to .npz)."),
    start_db: float | None = typer.Option(None, "--start-db", help=f"Level at the start of the shape in dB (default {DEFAULT_START_DB:g})."),
    range_db: float | None = typer.Option(None, "--range-db", help=f"How far the shape rises or falls in dB (default {DEFAULT_RANGE_DB:g}; fade always ends at -60)."),
    curve: str | None = typer.Option(None, "--curve", help=f"Curve kind: {', '.join(CURVES)} (default linear)."),
    start: float = typer.Option(0.0, "--start", help="Where the shape begins, seconds."),
    end: float | None = typer.Option(None, "--end", help="Where the shape ends, seconds (default: end of the clip)."),
    duration: float | None = typer.Option(None, "--duration", help=f"Clip length in seconds (default {DEFAULT_DURATION:g} for a shape; a CSV's own extent)."),
) -> None:
    source = _one_of("make dynamics", shape=shape, csv=csv)
    if source == "csv":
        _run("dynamics", out, lambda: read_dynamics(Path(csv), duration=duration))  # type: ignore[arg-type]
        return
    kwargs = _shape_kwargs(shape, start_db, range_db, curve)  # type: ignore[arg-type]
    _run("dynamics", out, lambda: dynamics_shape(duration=duration or DEFAULT_DURATION, start=start, end=end, **kwargs))


@app.command(
    "rhythm",
    help=(
        "Make a rhythm control from a tempo and meter, or by time-stretching a rhythm.csv template.\n\n"
        "Meters: 2-7 (beats per bar, i.e. N/4), 2/2, 3/2, and compound 6/8, 9/8, 12/8 where a beat is a "
        "dotted quarter (6/8 has 2 beats a bar). --stretch 1.1 makes a template 10% slower.\n\n"
        "Examples:\n\n"
        "  cadenza controls make rhythm --bpm 120 --meter 4 --duration 6 --out rhythm.csv\n\n"
        "  cadenza controls make rhythm --bpm 70 --meter 6/8 --start 1 --end 5 --duration 6 --out r.npz\n\n"
        "  cadenza controls make rhythm --template rhythm.csv --stretch 0.9 --duration 6 --out faster.csv"
    ),
)
def rhythm(
    out: Path = typer.Option(..., "--out", "-o", help="Output file: .csv (rhythm.csv format) or .npz."),
    bpm: float = typer.Option(120.0, "--bpm", help="Beats per minute (quarter notes; dotted quarters in 6/8)."),
    meter: str = typer.Option("4", "--meter", help="Beats per bar: 2-7, N/4, 2/2, 3/2, 6/8, 9/8 or 12/8."),
    start: float = typer.Option(0.0, "--start", help="Time of the first beat (a downbeat), seconds."),
    end: float | None = typer.Option(None, "--end", help="No beats after this time, seconds (default: end of the clip)."),
    template: Path | None = typer.Option(None, "--template", help="A rhythm.csv to time-stretch instead of a tempo grid."),
    stretch: float = typer.Option(1.0, "--stretch", help="Time-stretch factor for --template (0.5-2; the paper used 0.8-1.2)."),
    duration: float | None = typer.Option(None, "--duration", help=f"Clip length in seconds (default {DEFAULT_DURATION:g}; a template's own extent)."),
) -> None:
    if template is not None:
        # the template's beats, not a clip: a crop by --duration then bounds the length (huge times are refused without it)
        _run("rhythm", out, lambda: stretch_rhythm(parse_rhythm_csv(template), stretch, duration=duration))
        return
    _run("rhythm", out, lambda: rhythm_from_bpm(bpm, meter, start=start, end=end, duration=duration or DEFAULT_DURATION))


@app.command(
    "all",
    help=(
        "Combine a melody, dynamics and rhythm into one control set (.npz) or a folder of CSVs.\n\n"
        "Give any subset: --notes/--midi/--melody-csv for melody, --dynamics (a shape spec or a dynamics.csv) "
        "for dynamics, --meter or --rhythm-csv for rhythm. --bpm sets both the note durations and the beat grid.\n\n"
        "Examples:\n\n"
        "  cadenza controls make all --notes \"C4:1 E4:1 G4:2\" --dynamics crescendo --meter 4 --bpm 100 --out controls.npz\n\n"
        "  cadenza controls make all --midi tune.mid --dynamics swell:-35:20:cosine --duration 8 --out controls.npz\n\n"
        "  cadenza controls make all --melody-csv melody.csv --rhythm-csv rhythm.csv --out my_controls/"
    ),
)
def make_all(
    out: Path = typer.Option(..., "--out", "-o", help="Output: a .npz control set, or a folder (no extension) for CSVs."),
    notes: str | None = typer.Option(None, "--notes", help='Melody as a note string, e.g. "C4:1 E4:1 G4:2".'),
    midi: Path | None = typer.Option(None, "--midi", help="Melody from a MIDI file's top line."),
    melody_csv: Path | None = typer.Option(None, "--melody-csv", help="Melody from a melody.csv."),
    dynamics_spec: str | None = typer.Option(None, "--dynamics", help="Dynamics shape spec (e.g. swell:-35:20:cosine) or a dynamics.csv path."),
    meter: str | None = typer.Option(None, "--meter", help="Add a beat grid in this meter (2-7, N/4, 6/8, ...)."),
    rhythm_csv: Path | None = typer.Option(None, "--rhythm-csv", help="Rhythm from a rhythm.csv."),
    bpm: float = typer.Option(120.0, "--bpm", help="Tempo for note durations and the beat grid."),
    duration: float = typer.Option(DEFAULT_DURATION, "--duration", help="Clip length in seconds."),
) -> None:
    melody_source = [v for v in (notes, midi, melody_csv) if v is not None]
    if len(melody_source) > 1:
        raise CadenzaError("make all: give at most one of --notes, --midi, --melody-csv", "pick one melody source")
    if meter is not None and rhythm_csv is not None:
        raise CadenzaError("make all: give at most one of --meter, --rhythm-csv", "pick one rhythm source")
    if not melody_source and dynamics_spec is None and meter is None and rhythm_csv is None:
        raise CadenzaError("make all: no control given", "add --notes/--midi/--melody-csv, --dynamics, and/or --meter/--rhythm-csv")

    def build() -> ControlSet:
        parts: list[ControlSet] = []
        if melody_source:
            parts.append(read_melody(melody_source[0], bpm=bpm, duration=duration))
        if dynamics_spec is not None:
            parts.append(read_dynamics(dynamics_spec, duration=duration))
        if meter is not None:
            parts.append(rhythm_from_bpm(bpm, meter, duration=duration))
        if rhythm_csv is not None:
            parts.append(read_rhythm(rhythm_csv, duration=duration))
        cs = ControlSet.empty(parts[0].n_frames)
        for part in parts:
            cs = cs.merge(part)
        return cs

    _run("all", out, build)
