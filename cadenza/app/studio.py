"""The studio's engine, independent of HTTP: validate a request, queue it, generate, store it in the history.

``Studio.submit(fields, files)`` takes what a browser form sends (text fields plus uploads),
checks all of it (``cadenza.app.validation``), reserves a queue slot (or raises ``Busy``),
copies the uploads into a staging folder and starts the job. The job builds the controls,
generates with one of the loaded models, extracts the achieved controls from the output,
writes audio, controls (npz + CSV zip) and the overlay figure into the staging folder, and
commits it to the ``History`` (rename, then the row in a transaction). ``rerun`` repeats a
stored generation with its stored inputs and seed.
"""

from __future__ import annotations

import json
import logging
import os
import queue as queue_mod
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Mapping

import numpy as np
import torch

from cadenza.app.config import StudioConfig
from cadenza.app.queue import Busy, Job, JobQueue
from cadenza.app.validation import (
    MODES,
    GenerationRequest,
    RequestError,
    accept_upload,
    build_controls,
    copy_inputs,
    parse_form,
)
from cadenza.errors import CadenzaError
from cadenza.fsutil import atomic_path
from cadenza.history import Generation, History, check_id, new_id

log = logging.getLogger("cadenza.app")

FILES = {
    "audio": "audio.wav",
    "plot": "plot.png",
    "controls_zip": "controls.zip",
    "controls_npz": "controls.npz",
    "request": "request.json",
}
DOWNLOAD_NAMES = {"audio": "cadenza-{id}.wav", "plot": "cadenza-{id}.png", "controls_zip": "cadenza-{id}-controls.zip", "controls_npz": "cadenza-{id}-controls.npz", "request": "cadenza-{id}-request.json"}
JOB_FILE = "job.json"  # in a staging folder: the accepted request, until its generation is committed
MEDIA_TYPES = {"audio": "audio/wav", "plot": "image/png", "controls_zip": "application/zip", "controls_npz": "application/octet-stream", "request": "application/json"}


def _write_zip(path: Path, members: dict[str, Path]) -> Path:
    """A zip of ``members`` (name inside → file), written atomically."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for arcname, src in members.items():
                zf.write(src, arcname)
    return path


class Studio:
    """Loaded models + history + queue: everything ``cadenza serve`` serves."""

    def __init__(self, config: StudioConfig, generators: list[Any] | None = None) -> None:
        from cadenza.audio import MelSpectrogram
        from cadenza.pipeline import Cadenza

        self.config = config
        self.limits = config.limits
        if config.threads:
            torch.set_num_threads(int(config.threads))
        if generators is None:
            generators = [Cadenza.load(config.model) for _ in range(config.max_concurrent)]
        if not generators:
            raise CadenzaError("the studio needs at least one loaded model")
        self._lock = self._lock_root(config.root)  # before History sweeps: only the owner may clear leftovers
        try:
            self.history = History(config.root, sweep=False)  # staged jobs are recovered below, then the rest swept
        except BaseException:
            self._lock.close()
            raise
        self._pool: queue_mod.Queue = queue_mod.Queue()
        for gen in generators:
            self._pool.put(gen)
        first = generators[0]
        self.model_id: str = first.model_id
        sampling = first.sampling
        self.defaults = {
            "duration": float(min(sampling.get("duration", 6.0), self.limits.max_duration_s)),
            "steps": int(sampling.get("steps", 25)),
            "cfg": float(sampling.get("cfg", 3.0)),
            "control_cfg": sampling.get("control_cfg", 0.0),
            "dynamics_guidance": float(sampling.get("dynamics_guidance", 0.0)) if first.supports_dynamics_guidance else 0.0,
            "downbeat_cfg": float(sampling.get("downbeat_cfg", 0.0)) if getattr(first.generator, "supports_downbeat_cfg", False) else 0.0,
        }
        self.queue = JobQueue(config.max_concurrent, config.queue)
        self._mel = MelSpectrogram()
        self.recovered = self._recover()

    def _recover(self) -> dict[str, list[str]]:
        """Finish or fail the jobs a killed server left staged, then sweep what cannot be recovered.

        Every accepted job has a ``job.json`` in its staging folder (written before its 202), so
        after a kill -9 each one is queued again under its own id (its poll URL keeps working) or,
        when the queue has no room for it, recorded as a failed generation saying to rerun it. A
        job killed between the move into ``generations/`` and its row is moved back and requeued.
        Folders without a readable ``job.json`` are half-made requests: swept.
        """
        known = self.history.ids()
        for folder in self.history.generations.iterdir():
            if folder.name not in known and (folder / JOB_FILE).is_file() and not (self.history.staging / folder.name).exists():
                os.replace(folder, self.history.staging / folder.name)
        out: dict[str, list[str]] = {"requeued": [], "failed": [], "swept": []}
        for stage in sorted(self.history.staging.iterdir(), key=lambda p: p.stat().st_mtime):
            try:
                gid = check_id(stage.name)
                job = json.loads((stage / JOB_FILE).read_text())
                req = GenerationRequest.from_dict(job["request"])
                rerun_of = job.get("rerun_of")
            except (CadenzaError, OSError, ValueError, KeyError, TypeError):
                continue  # swept below
            try:
                slot = self.queue.reserve()
            except Busy:
                err = CadenzaError("the studio restarted before this generation ran, and had no room to run it again", "rerun it from the history")
                self._record_failure(stage, gid, req, err, rerun_of)
                out["failed"].append(gid)
                continue
            slot.start(gid, lambda job, gid=gid, req=req, rerun_of=rerun_of: self._generate(gid, req, rerun_of=rerun_of))
            out["requeued"].append(gid)
        pending = set(out["requeued"])
        out["swept"] = self.history.sweep(keep=pending)
        if any(out.values()):
            log.warning("recovered after a restart: %d requeued, %d failed, %d leftovers swept", len(out["requeued"]), len(out["failed"]), len(out["swept"]))
        return out

    def _stage_job(self, stage: Path, req: GenerationRequest, rerun_of: str | None = None) -> None:
        """Record an accepted job in its staging folder, so a restart can finish it (``_recover``)."""
        from cadenza.config import write_json_atomic

        write_json_atomic(stage / JOB_FILE, {"request": req.to_dict(), "rerun_of": rerun_of, "accepted": time.time()})

    # ------------------------------------------------------------------ lifecycle
    def warm_up(self) -> float:
        """One tiny generation per model and one analysis, so the first real request is not the slow one."""
        from cadenza.controls.extract import extract_controls

        t0 = time.perf_counter()
        gens = [self._pool.get() for _ in range(self._pool.qsize())]
        try:
            for gen in gens:
                wave, sr = gen.generate("warm up", duration=0.5, seed=0, steps=1)
            extract_controls(wave, sr)
        finally:
            for gen in gens:
                self._pool.put(gen)
        return time.perf_counter() - t0

    @staticmethod
    def _lock_root(root: Path) -> Any:
        """Hold an exclusive lock on ``root`` for the studio's lifetime: two studios on one root would sweep each other's work."""
        import fcntl

        root = Path(root).expanduser()
        if root.exists() and not root.is_dir():
            raise CadenzaError(f"{root}: exists and is not a folder", "give a folder for the studio's history (--root)")
        root.mkdir(parents=True, exist_ok=True)
        fh = open(root / "studio.lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise CadenzaError(f"{root}: another Cadenza studio is already serving this folder", "stop it, or pass a different --root") from None
        return fh

    def close(self) -> None:
        self.queue.shutdown(wait=True)
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    def options(self) -> dict:
        """What the page needs to draw its form: choices, defaults, limits, model."""
        from cadenza.controls.dynamics_files import CURVES, DEFAULT_RANGE_DB, DEFAULT_START_DB, SHAPES

        return {
            "model_id": self.model_id, "defaults": {**self.defaults, "bpm": 120.0, "meter": "4"}, "limits": self.limits.to_dict(),
            "modes": MODES, "shapes": list(SHAPES), "curves": list(CURVES),
            "dynamics_defaults": {"start_db": DEFAULT_START_DB, "range_db": DEFAULT_RANGE_DB}, "queue": self.queue.stats(),
        }

    # ------------------------------------------------------------------ requests
    def _complete(self, req: GenerationRequest) -> GenerationRequest:
        """Fill model defaults in, so the stored request alone reproduces the output."""
        req.duration = self.defaults["duration"] if req.duration is None else req.duration
        req.steps = self.defaults["steps"] if req.steps is None else req.steps
        req.cfg = self.defaults["cfg"] if req.cfg is None else req.cfg
        req.control_cfg = self.defaults["control_cfg"] if req.control_cfg is None else req.control_cfg
        req.dynamics_guidance = self.defaults["dynamics_guidance"] if req.dynamics_guidance is None else req.dynamics_guidance
        req.downbeat_cfg = self.defaults["downbeat_cfg"] if req.downbeat_cfg is None else req.downbeat_cfg
        return req

    def submit(self, fields: Mapping[str, str], files: Mapping[str, tuple[str | None, BinaryIO]] | None = None) -> Job:
        """Validate a form, store its uploads and queue the generation; ``Busy`` when full, ``RequestError`` when bad."""
        req = self._complete(parse_form(fields, self.limits, self.defaults["duration"]))
        files = files or {}
        slot = self.queue.reserve()
        gid = new_id()
        try:
            stage = self.history.stage(gid)
            for field_name, allowed in req.uploads_needed().items():
                control = field_name.removesuffix("_file")
                if field_name not in files:
                    raise RequestError(
                        f"{field_name}: no file uploaded",
                        f"the {control} source '{req.control(control)['mode']}' needs a file; choose one or pick another source",
                    )
                filename, stream = files[field_name]
                req.control(control).update(accept_upload(field_name, filename, stream, stage / "inputs", allowed, self.limits))
            build_controls(req, stage, extract=False)  # every cheap check now, before the request is accepted
            self._stage_job(stage, req)
            return slot.start(gid, lambda job: self._generate(gid, req))
        except BaseException:
            slot.release()
            self.history.discard(gid)
            raise

    def rerun(self, gid: str) -> Job:
        """Queue the stored generation ``gid`` again: same inputs, same seed (same model → same audio)."""
        old = self.history.get(check_id(gid))
        req = GenerationRequest.from_dict(old.request)
        slot = self.queue.reserve()
        new = new_id()
        try:
            stage = self.history.stage(new)
            copy_inputs(old.folder / "inputs", stage / "inputs")
            self._stage_job(stage, req, rerun_of=old.id)
            return slot.start(new, lambda job: self._generate(new, req, rerun_of=old.id))
        except BaseException:
            slot.release()
            self.history.discard(new)
            raise

    # ------------------------------------------------------------------ the work
    def _generate(self, gid: str, req: GenerationRequest, rerun_of: str | None = None) -> Generation:
        """Run in a queue worker: controls → audio → analysis → files → history row."""
        stage = self.history.staging / gid
        try:
            return self._generate_into(stage, gid, req, rerun_of)
        except CadenzaError as err:
            self._record_failure(stage, gid, req, err, rerun_of)
            raise
        except BaseException:
            self.history.discard(gid)  # a crash: no row, no files
            raise

    def _generate_into(self, stage: Path, gid: str, req: GenerationRequest, rerun_of: str | None) -> Generation:
        from cadenza.audio import save_audio
        from cadenza.config import write_json_atomic
        from cadenza.controls.extract import extract_controls
        from cadenza.controls.files import save_csvs
        from cadenza.eval.adherence import control_adherence
        from cadenza.app.figure import adherence_line, plot_overlay

        t0 = time.perf_counter()
        cs = build_controls(req, stage, extract=True)
        t1 = time.perf_counter()
        gen = self._pool.get()
        try:  # the result comes back with the call: nothing is read off the shared model afterwards
            result = gen.run(gen.request(req.prompt, controls=cs, duration=req.duration, seed=req.seed, steps=req.steps, cfg=req.cfg, control_cfg=req.control_cfg,
                                         dynamics_guidance=req.dynamics_guidance, downbeat_cfg=req.downbeat_cfg))
            model_id = gen.model_id
        finally:
            self._pool.put(gen)
        wave, sr, info = result.wave, result.sample_rate, result.info
        t2 = time.perf_counter()
        heard = extract_controls(wave, sr)
        scores = control_adherence(cs, heard)
        logmel = self._mel(torch.from_numpy(np.ascontiguousarray(wave))).numpy()
        save_audio(stage / FILES["audio"], wave, sr)
        cs.save(stage / FILES["controls_npz"])
        csv_dir = stage / "csv"
        csvs = save_csvs(cs, csv_dir)
        write_json_atomic(stage / FILES["request"], req.to_dict())
        members = {p.name: p for p in csvs} | {"controls.npz": stage / FILES["controls_npz"], "request.json": stage / FILES["request"]}
        _write_zip(stage / FILES["controls_zip"], members)
        title = (req.prompt or "(no prompt)")[:70] + f"  —  {adherence_line(scores)}"
        plot_overlay(cs, heard, logmel, stage / FILES["plot"], title=title)
        t3 = time.perf_counter()
        timings = {
            "controls_s": round(t1 - t0, 3), **info.get("timings", {}), "analysis_s": round(t3 - t2, 3),
            "total_s": round(t3 - t0, 3),
        }
        record = {
            "timings": timings, "adherence": scores, "controls": info.get("controls", {}), "vocoder": info.get("vocoder"),
            "sampler": info.get("sampler"), "steps": info.get("steps"), "cfg": info.get("cfg"),
            "control_cfg": info.get("control_cfg"), "dynamics_guidance": info.get("dynamics_guidance"), "downbeat_cfg": info.get("downbeat_cfg"),
            "sample_rate": sr, "samples": int(len(wave)),
        }
        return self.history.commit(
            gid, prompt=req.prompt, seed=req.seed, duration_s=float(req.duration), model_id=model_id,
            request=req.to_dict(), files=dict(FILES), info=record, rerun_of=rerun_of,
        )

    def _record_failure(self, stage: Path, gid: str, req: GenerationRequest, err: CadenzaError, rerun_of: str | None) -> None:
        """A generation the user's input made fail: keep its inputs and the message as a 'failed' row."""
        from cadenza.config import write_json_atomic

        try:
            for path in stage.iterdir():
                if path.name not in ("inputs", JOB_FILE):
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
            write_json_atomic(stage / FILES["request"], req.to_dict())
            self.history.commit(
                gid, prompt=req.prompt, seed=req.seed, duration_s=float(req.duration or 0.0), model_id=self.model_id,
                request=req.to_dict(), files={"request": FILES["request"]}, info={}, status="failed", error=str(err), rerun_of=rerun_of,
            )
        except Exception:
            log.exception("could not record failed generation %s", gid)
            self.history.discard(gid)

    # ------------------------------------------------------------------ views
    def generation_view(self, g: Generation) -> dict:
        out = g.to_dict()
        out["urls"] = {kind: f"/api/history/{g.id}/{kind}" for kind in g.files}
        out["same_model"] = g.model_id == self.model_id
        return out

    def job_view(self, job_id: str) -> dict:
        check_id(job_id)
        job = self.queue.get(job_id)
        if job is None:  # e.g. the server restarted: the history still knows finished ones
            try:
                return {"id": job_id, "status": "done", "generation": self.generation_view(self.history.get(job_id))}
            except CadenzaError:
                raise RequestError(f"no job or generation with id {job_id}", "it may have been refused or the server restarted", status=404) from None
        out = job.to_dict()
        out["position"] = self.queue.position(job_id)
        if job.status == "done":
            out["generation"] = self.generation_view(job.result)
        return out

    def file_for(self, gid: str, kind: str) -> tuple[Path, str, str]:
        """(path, media type, download name) of a stored file, looked up by id and kind only."""
        if kind not in FILES:
            raise RequestError(f"unknown file kind '{kind[:40]}'", f"choose one of {', '.join(FILES)}", status=404)
        try:
            g = self.history.get(check_id(gid))
        except CadenzaError as err:
            raise RequestError(err.message, err.hint, status=404) from None
        try:
            path = g.path(kind)
        except CadenzaError as err:
            raise RequestError(err.message, err.hint, status=404) from None
        return path, MEDIA_TYPES[kind], DOWNLOAD_NAMES[kind].format(id=g.id)
