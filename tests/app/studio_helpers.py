"""Helpers for the studio tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import soundfile as sf
import torch

from cadenza.checkpoint import save_model_folder
from cadenza.config import load_config
from cadenza.generators import build_generator

CSRF = {"X-Requested-With": "cadenza"}
FAST = {"duration": "1", "steps": "2"}


def make_debug_model(folder) -> None:
    """The debug generator config with random weights (zero-initialised joins made live, as training would)."""
    cfg = load_config("generator", "debug")
    torch.manual_seed(0)
    net = build_generator(cfg)
    with torch.no_grad():
        for conv in [*net.adapter.zero_skips, net.adapter.zero_mid, net.adapter.controls.zero_conv, net.base.decoder.conv_out]:
            torch.nn.init.normal_(conv.weight, std=0.05)
    save_model_folder(folder, net.state_dict(), cfg)


class GatedGenerator:
    """Wraps a loaded ``Cadenza``: ``run`` (what the studio calls) waits for ``gate`` (if set) and may raise ``fail`` instead."""

    def __init__(self, gen, gate: threading.Event | None = None, fail: BaseException | None = None) -> None:
        self._gen = gen
        self.gate = gate
        self.fail = fail
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self._gen, name)

    def run(self, *args, **kwargs):
        self.calls += 1
        if self.gate is not None and not self.gate.wait(20):
            raise TimeoutError("test gate never opened")
        if self.fail is not None:
            raise self.fail
        return self._gen.run(*args, **kwargs)


def wav_bytes(seconds: float = 1.0, sr: int = 22050, freq: float = 440.0) -> bytes:
    """A short sine tone with clicks every 0.5 s, as WAV bytes."""
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t)
    x[(np.arange(len(t)) % (sr // 2)) < 200] += 0.5
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def midi_bytes(pitches=(60, 64, 67), beat: float = 0.25) -> bytes:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    for i, p in enumerate(pitches):
        inst.notes.append(pretty_midi.Note(velocity=90, pitch=p, start=i * beat, end=(i + 1) * beat))
    pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def wait_job(client, job_id: str, timeout: float = 30.0) -> dict:
    """Poll ``/api/jobs/<id>`` until it is done or failed."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/jobs/{job_id}").json()
        if body["status"] in ("done", "failed"):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {body['status']} after {timeout} s")
        time.sleep(0.05)
