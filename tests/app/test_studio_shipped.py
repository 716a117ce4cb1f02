"""``cadenza serve`` with no ``--model`` serves the generator shipped in ``cadenza/weights/generator``."""

from __future__ import annotations

import json
import stat

from cadenza.app.config import StudioConfig
from cadenza.app.studio import Studio
from cadenza.cli import main
from cadenza.fsutil import default_file_mode
from cadenza.generators.model import WEIGHTS_DIR, weights_digest


def test_serve_without_model_asks_for_the_shipped_one(monkeypatch, tmp_path) -> None:
    import cadenza.app.server as server

    seen = {}
    monkeypatch.setattr(server, "serve", lambda config, on_ready=None: seen.update(config=config))
    assert main(["serve", "--no-warmup", "--port", "0", "--root", str(tmp_path)]) == 0
    assert seen["config"].model is None


def test_studio_generates_with_the_shipped_model(tmp_path) -> None:
    studio = Studio(StudioConfig(root=tmp_path, warmup=False))
    try:
        shipped = json.loads((WEIGHTS_DIR / "config.json").read_text())["model_id"]
        assert studio.model_id == f"{shipped}@{weights_digest(WEIGHTS_DIR)}"
        job = studio.submit({"prompt": "calm piano", "duration": "1", "steps": "1", "seed": "3"})
        job = studio.queue.wait(job.id, timeout=300)
        assert job.status == "done", job
        g = job.result
        assert g.model_id == studio.model_id and g.duration_s == 1.0
        audio = studio.history.folder(g.id) / g.files["audio"]
        assert audio.stat().st_size > 1000
        assert stat.S_IMODE(audio.stat().st_mode) == default_file_mode()  # not mkstemp's 0600: a web server may read it
    finally:
        studio.close()
