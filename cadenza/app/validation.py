"""Everything a studio request may carry, checked before any work starts.

A request is a flat form (what a browser's ``FormData`` sends) plus up to three uploads. It is
parsed into a ``GenerationRequest``: plain JSON-ready values, stored verbatim in the history
row so a re-run rebuilds exactly the same controls. Uploads are copied under names the studio
chooses (never the client's), after checks on name, type, size and length. Every problem is
a ``RequestError`` (a ``CadenzaError`` with an HTTP status) naming the form field at fault.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import unicodedata
from urllib.parse import unquote
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO, Mapping

import numpy as np
import soundfile as sf

from cadenza.app.config import Limits
from cadenza.audio import FRAME_RATE, SAMPLE_RATE, SUPPORTED_EXTENSIONS, frames_for_duration, load_audio
from cadenza.controls.base import CONTROL_NAMES, DB_CEIL, DB_FLOOR, ControlSet
from cadenza.controls.registry import CONTROLS, ControlSpec, _resolve, control_names
from cadenza.errors import CadenzaError
from cadenza.limits import MAX_GUIDANCE, MAX_SEED, check_float, check_int


def modes() -> dict[str, tuple[str, ...]]:
    """Each registered control's studio choices (``ControlSpec.studio_modes``)."""
    return {name: spec.studio_modes for name, spec in CONTROLS.items()}


MODES: dict[str, tuple[str, ...]] = modes()  # the shipped controls' (what the studio page lists)
MIDI_EXTS = (".mid", ".midi")
AUDIO_EXTS = tuple(SUPPORTED_EXTENSIONS)
MIN_UPLOAD_S = 0.1
DRAWN_SEEDS = 2**31  # a blank seed is drawn below this (any seed up to limits.MAX_SEED may be typed)
CHUNK = 1 << 20


class RequestError(CadenzaError):
    """A bad request, with the HTTP status the studio answers it with."""

    def __init__(self, message: str, hint: str | None = None, status: int = 400) -> None:
        super().__init__(message, hint)
        self.status = status


# ---------------------------------------------------------------------------------- the request
@dataclass
class GenerationRequest:
    """One generation's inputs; ``melody``/``dynamics``/``rhythm`` are ``{"mode": ..., ...}`` dicts."""

    prompt: str
    duration: float | None = None
    seed: int = 0
    steps: int | None = None
    cfg: float | None = None
    control_cfg: float | dict | None = None  # one scale, or {control: scale}; None = the model's
    dynamics_guidance: float | None = None  # loudness correction 0–1 (diffusion models); None = the model's
    downbeat_cfg: float | None = None  # downbeat guidance scale (diffusion models); None = the model's
    bpm: float = 120.0
    meter: str = "4"
    melody: dict = field(default_factory=lambda: {"mode": "none"})
    dynamics: dict = field(default_factory=lambda: {"mode": "none"})
    rhythm: dict = field(default_factory=lambda: {"mode": "none"})
    # any other registered control's mode dict, by name: stored flat beside the shipped three, so a
    # history row looks the same for every control and rows written before it existed still load
    more: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        return {**{k: v for k, v in out.items() if k != "more"}, **out["more"]}

    @classmethod
    def from_dict(cls, data: Mapping) -> "GenerationRequest":
        more = {k: dict(data[k]) for k in control_names() if k not in cls.__dataclass_fields__ and k in data}
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "more"}, more=more)

    def control(self, name: str) -> dict:
        if name in CONTROL_NAMES:
            return getattr(self, name)
        return self.more.setdefault(name, {"mode": "none"})

    def set_control(self, name: str, value: dict) -> None:
        if name in CONTROL_NAMES:
            setattr(self, name, value)
        else:
            self.more[name] = value

    def uploads_needed(self) -> dict[str, tuple[str, ...]]:
        """Form file field → allowed extensions, for the controls whose mode reads a file."""
        out = {}
        for name in control_names():
            mode = self.control(name)["mode"]
            if mode == "midi":
                out[f"{name}_file"] = MIDI_EXTS
            elif mode == "audio":
                out[f"{name}_file"] = AUDIO_EXTS
        return out


def _blank(value: str | None) -> bool:
    return value is None or str(value).strip() == ""


def _control_scale(fields: Mapping) -> float | dict | None:
    """The form's ``control_cfg``: blank = the model's default, else a number or ``melody=7,rhythm=3``."""
    from cadenza.conditioning.cfg import parse_control_scale

    text = str(fields.get("control_cfg") or "").strip()
    if not text:
        return None
    if len(text) > 200:
        raise RequestError("control_cfg: too long", "give one number or a few name=scale pairs")
    try:
        return parse_control_scale(text, control_names())
    except CadenzaError as err:
        raise RequestError(err.message, err.hint) from None


def _number(
    fields: Mapping[str, str], name: str, default: float | None, lo: float, hi: float, *,
    integer: bool = False, unit: str = "", lo_open: bool = False,
) -> float | None:
    """A numeric field: blank → ``default``; otherwise the shared check of ``cadenza.limits``, as a 400."""
    raw = fields.get(name)
    if _blank(raw):
        return default
    try:
        if integer:
            return check_int(name, str(raw), int(lo), int(hi), hint=f"give a whole number between {lo:g} and {hi:g}")
        return check_float(name, str(raw), lo, hi, lo_open=lo_open, unit=unit)
    except CadenzaError as err:
        raise RequestError(err.message, err.hint) from None


def _choice(fields: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = fields.get(name)
    value = default if _blank(raw) else str(raw).strip().lower()
    if value not in choices:
        raise RequestError(f"{name}: unknown choice '{str(raw)[:40]}'", f"choose one of {', '.join(choices)}")
    return value


def _span(fields: Mapping[str, str], name: str, duration: float) -> tuple[float, float | None]:
    """The control's time span in seconds; blank start is 0, blank end is the end of the clip."""
    start = _number(fields, f"{name}_start", 0.0, 0.0, duration, unit=" s")
    end = _number(fields, f"{name}_end", None, 0.0, duration + 1e-6, unit=" s")
    if end is not None and end <= start:
        raise RequestError(f"{name}: span end {end:g} s is not after its start {start:g} s", "give start < end, both within the clip (blank end = to the end)")
    if start >= duration:
        raise RequestError(f"{name}: span start {start:g} s is at or after the end of the clip ({duration:g} s)", "start the control inside the clip")
    return start, end


def parse_points(raw: str | None, duration: float, limits: Limits) -> list[list[float]]:
    """A drawn dynamics curve: JSON ``[[time_s, db], ...]`` with increasing times and levels in range."""
    if _blank(raw):
        raise RequestError("dynamics_points: no curve drawn", "draw the dynamics curve on the canvas, or pick a shape instead")
    text = str(raw)
    if len(text) > 32 * limits.max_points:  # before parsing: a pair never needs more than a few dozen characters
        raise RequestError(f"dynamics_points: {len(text):,} characters is too long", f"send at most {limits.max_points} [time_s, db] pairs")
    try:
        pts = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError, a 5,000-digit integer, [[[[...]]]] nested too deep
        raise RequestError("dynamics_points: not valid JSON", "send [[time_s, db], ...]") from None
    try:
        arr = np.asarray(pts, dtype=object)
    except ValueError:  # ragged rows
        arr = np.zeros((0,), dtype=object)
    if arr.ndim != 2 or arr.shape[1] != 2 or not 2 <= len(arr) <= limits.max_points:
        raise RequestError(f"dynamics_points: expected 2 to {limits.max_points} [time_s, db] pairs", "draw a longer curve")
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError, OverflowError):  # text, nested lists, integers past float range
        raise RequestError("dynamics_points: every time and level must be a number", "send [[time_s, db], ...] with plain numbers") from None
    if not np.isfinite(arr).all():
        raise RequestError("dynamics_points: times and levels must be finite numbers", "send [[time_s, db], ...] with plain numbers")
    if (np.diff(arr[:, 0]) <= 0).any() or arr[0, 0] < 0 or arr[-1, 0] > duration + 1e-6:
        raise RequestError("dynamics_points: times must increase strictly and lie inside the clip", f"0 to {duration:g} s")
    if (arr[:, 1] < DB_FLOOR).any() or (arr[:, 1] > DB_CEIL).any():
        raise RequestError("dynamics_points: levels out of range", f"dBFS between {DB_FLOOR:g} and {DB_CEIL:g} (about -30 quiet, -10 loud)")
    return arr.round(4).tolist()


def parse_form(fields: Mapping[str, str], limits: Limits, default_duration: float = 6.0) -> GenerationRequest:
    """Form fields → a complete ``GenerationRequest`` (files are checked separately by ``accept_upload``)."""
    from cadenza.controls.notes import check_bpm
    from cadenza.controls.rhythm_files import parse_meter

    prompt = str(fields.get("prompt") or "").strip()
    if len(prompt) > limits.max_prompt_chars:
        raise RequestError(f"prompt: {len(prompt)} characters is too long", f"keep it under {limits.max_prompt_chars} characters")
    duration = _number(fields, "duration", default_duration, 0.0, limits.max_duration_s, unit=" s", lo_open=True)
    seed = _number(fields, "seed", None, 0, MAX_SEED, integer=True)
    if seed is None:  # a blank seed is drawn here and stored, so a re-run is still exact
        seed = random.SystemRandom().randrange(DRAWN_SEEDS)
    steps = _number(fields, "steps", None, 1, limits.max_steps, integer=True)
    cfg = _number(fields, "cfg", None, 0.0, MAX_GUIDANCE)
    control_cfg = _control_scale(fields)
    dynamics_guidance = _number(fields, "dynamics_guidance", None, 0.0, 1.0)
    downbeat_cfg = _number(fields, "downbeat_cfg", None, 0.0, MAX_GUIDANCE)
    try:
        bpm = check_bpm(_number(fields, "bpm", 120.0, 0.0, 1e9, lo_open=True), "bpm")
        meter = str(fields.get("meter") or "4").strip()
        parse_meter(meter)
    except RequestError:
        raise
    except CadenzaError as err:
        raise RequestError(err.message, err.hint) from None
    req = GenerationRequest(prompt=prompt, duration=duration, seed=int(seed), steps=steps, cfg=cfg, control_cfg=control_cfg,
                            dynamics_guidance=dynamics_guidance, downbeat_cfg=downbeat_cfg, bpm=bpm, meter=meter)
    for name, spec in CONTROLS.items():
        mode = _choice(fields, f"{name}_mode", spec.studio_modes, "none")
        parsed = {"mode": mode} if mode == "none" else _resolve(spec.studio_ref or f"{__name__}:parse_span_form")(fields, mode, name, duration, limits)
        req.set_control(name, parsed)
    return req


def parse_span_form(fields: Mapping[str, str], mode: str, name: str, duration: float, limits: Limits) -> dict:
    """A control's mode and time span (all a control needs whose source is a file or the tempo)."""
    start, end = _span(fields, name, duration)
    return {"mode": mode, "start": start, "end": end}


def parse_melody_form(fields: Mapping[str, str], mode: str, name: str, duration: float, limits: Limits) -> dict:
    """The melody's span, plus its typed notes in ``notes`` mode."""
    spec = parse_span_form(fields, mode, name, duration, limits)
    if mode == "notes":
        notes = str(fields.get("melody_notes") or "").strip()
        if not notes:
            raise RequestError("melody_notes: no notes typed", 'type notes like "C4:1 E4:1 G4:2" (pitch:beats), or choose another melody source')
        if len(notes) > limits.max_notes_chars:
            raise RequestError(f"melody_notes: {len(notes)} characters is too long", f"keep it under {limits.max_notes_chars} characters")
        spec["notes"] = notes
    return spec


def parse_dynamics_form(fields: Mapping[str, str], mode: str, name: str, duration: float, limits: Limits) -> dict:
    """The dynamics' span, plus its shape settings or its drawn curve."""
    from cadenza.controls.dynamics_files import CURVES, SHAPES

    spec = parse_span_form(fields, mode, name, duration, limits)
    if mode == "shape":
        spec["shape"] = _choice(fields, "dynamics_shape", SHAPES, "crescendo")
        spec["curve"] = _choice(fields, "dynamics_curve", CURVES, "linear")
        spec["start_db"] = _number(fields, "dynamics_start_db", -30.0, DB_FLOOR, DB_CEIL, unit=" dB")
        spec["range_db"] = _number(fields, "dynamics_range_db", 15.0, 0.0, 60.0, unit=" dB")
    elif mode == "drawn":
        spec["points"] = parse_points(fields.get("dynamics_points"), duration, limits)
    return spec


# ---------------------------------------------------------------------------------- uploads
def check_filename(name: str | None, field_name: str) -> str:
    """The client's file name, refused when it looks like a path (it is never used as one anyway)."""
    text = str(name or "")
    decoded = unquote(text)  # '%2e%2e%2fx.wav' is '../x.wav' to anything that decodes it later
    if not text.strip():
        raise RequestError(f"{field_name}: the uploaded file has no name", "choose a file to upload")
    if len(text) > 255:
        raise RequestError(f"{field_name}: file name is too long ({len(text)} characters)", "rename the file")
    if any(c in t for t in (text, decoded) for c in "/\\\x00") or any(t.strip() in (".", "..") or t.startswith("..") for t in (text, decoded)):
        raise RequestError(
            f"{field_name}: file name '{text[:80]}' looks like a path",
            "upload a file with a plain name (no /, \\ or ..); the studio stores uploads under its own names",
        )
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in text + decoded):  # controls, and U+202E-style direction tricks
        raise RequestError(f"{field_name}: file name contains control characters", "rename the file")
    return text


def accept_upload(
    field_name: str, filename: str | None, stream: BinaryIO, dest_dir: Path, allowed: tuple[str, ...], limits: Limits
) -> dict:
    """Copy one upload to ``dest_dir/<field>.<ext>`` after checking its name, type, size and (for audio) length.

    Returns ``{"file": relative name, "upload_name": client name}`` for the request record.
    """
    name = check_filename(filename, field_name)
    ext = Path(name).suffix.lower()
    kind = "MIDI file" if allowed == MIDI_EXTS else "audio file"
    if ext not in allowed:
        raise RequestError(f"{field_name}: '{name}' is not a {kind}", f"upload one of {', '.join(allowed)}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{field_name}{ext}"
    limit, total = limits.max_upload_bytes, 0
    with open(target, "wb") as out:
        while block := stream.read(CHUNK):
            total += len(block)
            if total > limit:
                out.close()
                target.unlink(missing_ok=True)
                raise RequestError(
                    f"{field_name}: '{name}' is larger than {limits.max_upload_mb:g} MB", "upload a shorter or compressed file", status=413
                )
            out.write(block)
    if total == 0:
        target.unlink(missing_ok=True)
        raise RequestError(f"{field_name}: '{name}' is empty (0 bytes)", "choose the file again; it may not have finished saving")
    if allowed == AUDIO_EXTS:
        check_audio_upload(target, field_name, name, limits)
    return {"file": f"{dest_dir.name}/{target.name}", "upload_name": name}


def check_audio_upload(path: Path, field_name: str, name: str, limits: Limits) -> float:
    """Length of an uploaded recording from its header (no decoding), within the studio's limits."""
    try:
        info = sf.info(str(path))
        seconds = info.frames / info.samplerate if info.samplerate else 0.0
    except Exception:  # libsndfile's errors are terse and typed differently across versions
        raise RequestError(f"{field_name}: '{name}' cannot be read as audio", f"upload a valid {', '.join(AUDIO_EXTS)} file") from None
    if seconds > limits.max_upload_s:
        raise RequestError(
            f"{field_name}: '{name}' is {seconds / 60:.1f} min long; recordings may be at most {limits.max_upload_s / 60:g} min",
            "trim the recording", status=413,
        )
    if seconds < MIN_UPLOAD_S:
        raise RequestError(f"{field_name}: '{name}' is too short ({seconds:.3f} s)", f"upload at least {MIN_UPLOAD_S:g} s of audio")
    return seconds


# ---------------------------------------------------------------------------------- controls
def restrict_to_span(cs: ControlSet, name: str, start: float, end: float | None) -> ControlSet:
    """Keep control ``name`` only on frames whose centre lies in [start, end]; its events likewise."""
    return cs.restrict_to_span(name, start, end)


def build_melody(req: GenerationRequest, spec: dict, folder: Path, n_frames: int) -> ControlSet:
    from cadenza.controls import files

    if spec["mode"] == "notes":
        return files.read_melody(spec["notes"], n_frames, bpm=req.bpm, start=spec.get("start", 0.0))
    return files.read_melody(folder / spec["file"], n_frames)  # midi


def build_dynamics(req: GenerationRequest, spec: dict, folder: Path, n_frames: int) -> ControlSet:
    from cadenza.controls import files

    if spec["mode"] == "shape":
        return files.dynamics_shape(
            spec["shape"], n_frames, start_db=spec["start_db"], range_db=spec["range_db"], start=spec.get("start", 0.0), end=spec.get("end"), curve=spec["curve"]
        )
    return files.dynamics_from_points(np.asarray(spec["points"], dtype=np.float64), n_frames, "drawn dynamics")  # drawn


def build_rhythm(req: GenerationRequest, spec: dict, folder: Path, n_frames: int) -> ControlSet:
    from cadenza.controls import files

    return files.rhythm_from_bpm(req.bpm, req.meter, n_frames, start=spec.get("start", 0.0), end=spec.get("end"))  # bpm


def _one_control(req: GenerationRequest, name: str, folder: Path, n_frames: int, extract: bool) -> ControlSet | None:
    control_spec: ControlSpec = CONTROLS[name]
    spec = req.control(name)
    mode = spec["mode"]
    if mode not in control_spec.studio_modes or mode == "none":
        raise RequestError(f"{name}: unknown mode '{mode}'", f"choose one of {', '.join(control_spec.studio_modes)}")
    if mode == "audio":
        if not extract:  # checked at upload; extraction is the slow part and runs in the queue
            return None
        audio = load_audio(folder / spec["file"])[: int(round(req.duration * SAMPLE_RATE))]
        return control_spec.extract(audio, SAMPLE_RATE).fit_length(n_frames)
    if control_spec.studio_build_ref is None:
        raise RequestError(f"{name}: mode '{mode}' has no builder", "register the control with a studio_build_ref")
    return _resolve(control_spec.studio_build_ref)(req, spec, folder, n_frames)


def build_controls(req: GenerationRequest, folder: Path, extract: bool = True) -> ControlSet:
    """The request's controls on the output's frame grid; ``extract=False`` skips recordings (a quick check)."""
    if req.duration is None:
        raise RequestError("duration: not set", "give the length of the output in seconds")
    n_frames = frames_for_duration(req.duration)
    cs = ControlSet.empty(n_frames)
    for name in control_names():
        spec = req.control(name)
        if spec["mode"] == "none":
            continue
        try:
            one = _one_control(req, name, folder, n_frames, extract)
        except RequestError:
            raise
        except CadenzaError as err:
            raise RequestError(f"{name}: {err.message}", err.hint) from None
        if one is None:
            continue
        one = restrict_to_span(one, name, spec.get("start", 0.0), spec.get("end"))
        if not getattr(one, f"{name}_mask").any():
            raise RequestError(
                f"{name}: nothing of this control falls inside its span ({spec.get('start', 0.0):g} s to {spec.get('end') or 'the end'})",
                "widen the span, or check the notes/file covers it",
            )
        cs = cs.with_control(name, one)
    return cs


def copy_inputs(src: Path, dst: Path) -> None:
    """Copy a stored generation's ``inputs/`` folder (for a re-run)."""
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
