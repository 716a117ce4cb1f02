"""Controls are an open set: a fourth control registered from this module alone round-trips
through every layer (ControlSet, npz files and their limits, resolve_controls, summaries, the
studio's forms, eval's scoring and tables), and a network not trained on it refuses it clearly.

The toy control is "brightness": one number per frame in [0, 1], a creator gives it as a
constant level ("0.7"), the studio as a ``level`` mode, eval scores it by mean absolute error.
Nothing outside this file knows the name.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cadenza.app.config import Limits
from cadenza.app.validation import GenerationRequest, RequestError, build_controls, parse_form
from cadenza.audio.format import FRAME_RATE
from cadenza.conditioning.controls import ControlEncoder, check_trained_on, controls_to_tensors, random_control_masks
from cadenza.controls.base import CONTROL_NAMES, ControlSet
from cadenza.controls.registry import CONTROLS, ControlSpec, control_names, register_control, unregister_control
from cadenza.errors import CadenzaError
from cadenza.eval.adherence import aggregate_scores, compare_controls, control_adherence
from cadenza.eval.run import subsets_for
from cadenza.eval.tables import columns, table_markdown
from cadenza.limits import MAX_FRAMES
from cadenza.pipeline import controls_summary, resolve_controls

T = 87  # frames (about 1 s)
HERE = __name__  # the registry imports the toy's functions by "module:function", as any plug-in's


# ------------------------------------------------------------------ the toy control's code
def check_brightness(values: np.ndarray, mask: np.ndarray) -> None:
    if (values < 0).any() or (values > 1).any():
        raise CadenzaError("brightness must lie in [0, 1]")


def read_brightness(source: str, n_frames: int) -> ControlSet:
    level = float(source)
    return ControlSet(n_frames, brightness=np.full(n_frames, level, np.float32), brightness_mask=np.ones(n_frames, np.float32),
                      brightness_points=np.array([[0.0, level]]))


def brightness_metrics(given: ControlSet, generated: ControlSet) -> dict[str, float]:
    m = given.brightness_mask > 0
    mae = float(np.abs(given.brightness[m] - generated.brightness[m]).mean()) if m.any() else float("nan")
    return {"brightness_mae": mae, "brightness_frames": int(m.sum())}


def brightness_aggregate(scores: list[dict[str, float]]) -> dict[str, float]:
    vals = np.array([s["brightness_mae"] for s in scores], np.float64)
    return {"brightness_mae_mean": float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")}


def parse_brightness_form(fields, mode: str, name: str, duration: float, limits: Limits) -> dict:
    from cadenza.app.validation import parse_span_form

    spec = parse_span_form(fields, mode, name, duration, limits)
    try:
        spec["level"] = float(fields.get("brightness_level", ""))
    except ValueError:
        raise RequestError("brightness_level: not a number", "give a level from 0 to 1") from None
    return spec


def build_brightness(req: GenerationRequest, spec: dict, folder: Path, n_frames: int) -> ControlSet:
    return read_brightness(str(spec["level"]), n_frames)


BRIGHTNESS = ControlSpec(
    name="brightness", shape=(), events="brightness_points", about="spectral brightness in [0, 1]",
    render_ref=f"{HERE}:read_brightness", score_prefixes=("brightness_",), check_ref=f"{HERE}:check_brightness",
    input_center=0.5, input_scale=0.5,
    metrics_ref=f"{HERE}:brightness_metrics", aggregate_ref=f"{HERE}:brightness_aggregate",
    headline=(("brightness_err", "brightness_mae"),), columns=(("brightness_mae_mean", "brightness MAE", 1.0, 3),),
    studio_modes=("none", "level"), studio_ref=f"{HERE}:parse_brightness_form", studio_build_ref=f"{HERE}:build_brightness",
)


@pytest.fixture(autouse=True)
def brightness():
    register_control(BRIGHTNESS)
    yield BRIGHTNESS
    unregister_control("brightness")
    assert control_names() == CONTROL_NAMES  # the shipped registry is back as it was


def _given(level: float = 0.25, start: int = 10, stop: int = 60) -> ControlSet:
    mask = np.zeros(T, np.float32)
    mask[start:stop] = 1
    return ControlSet(T, brightness=np.full(T, level, np.float32), brightness_mask=mask, brightness_points=np.array([[0.2, level], [0.9, level]]))


# ------------------------------------------------------------------ ControlSet and files
def test_the_toy_is_one_more_registered_control():
    assert control_names() == (*CONTROL_NAMES, "brightness") and CONTROLS["brightness"].dim == 1
    assert CONTROL_NAMES == ("melody", "dynamics", "rhythm")  # the shipped list does not move


def test_control_set_construct_validate_crop_and_fit(brightness):
    cs = _given()
    assert cs.given() == ["brightness"] and cs.brightness[5] == 0.0 and cs.brightness[20] == np.float32(0.25)  # zero under a free mask
    with pytest.raises(CadenzaError, match=r"brightness must lie in \[0, 1\]"):
        ControlSet(T, brightness=np.full(T, 2.0, np.float32), brightness_mask=np.ones(T, np.float32))
    with pytest.raises(CadenzaError, match="control 'brightness' has shape"):
        ControlSet(T, brightness=np.zeros((T, 2), np.float32))
    short = cs.fit_length(40)
    assert short.n_frames == 40 and short.brightness_mask.sum() == 30
    assert short.brightness_points.tolist() == [[0.2, 0.25]]  # the 0.9 s point lies past the end
    assert cs.fit_length(100).brightness_mask[T:].sum() == 0
    part = cs.slice_frames(20, 80)
    assert part.n_frames == 60 and part.brightness_mask.sum() == 40
    np.testing.assert_allclose(part.brightness_points[:, 0], [0.9 - 20 / FRAME_RATE])
    assert cs.select(["melody"]).given() == [] and cs.select(["brightness"]).given() == ["brightness"]
    merged = ControlSet.empty(T).merge(cs)
    np.testing.assert_array_equal(merged.brightness, cs.brightness)
    spanned = cs.restrict_to_span("brightness", 0.0, 0.5)
    assert spanned.brightness_mask.sum() == int(0.5 * FRAME_RATE) + 1 - 10 and spanned.brightness_points.tolist() == [[0.2, 0.25]]


def test_npz_round_trip_and_older_files(tmp_path):
    cs = _given().with_control("melody", ControlSet(T, melody=np.eye(12, dtype=np.float32)[np.arange(T) % 12], melody_mask=np.ones(T, np.float32)))
    back = ControlSet.load(cs.save(tmp_path / "c.npz"))
    assert back.given() == ["melody", "brightness"]
    for key in ("brightness", "brightness_mask", "brightness_points", "melody", "melody_notes"):
        np.testing.assert_array_equal(getattr(back, key), getattr(cs, key))
    with zipfile.ZipFile(tmp_path / "c.npz") as zf:
        assert {"brightness.npy", "brightness_mask.npy", "brightness_points.npy"} <= set(zf.namelist())
    # a file written before the control existed (only the shipped members) loads with it free
    old = {k: v for k, v in np.load(tmp_path / "c.npz").items() if not k.startswith("brightness")}
    np.savez_compressed(tmp_path / "old.npz", **old)
    loaded = ControlSet.load(tmp_path / "old.npz")
    assert loaded.given() == ["melody"] and loaded.brightness.shape == (T,)


def test_limits_judge_the_new_members_from_their_headers(tmp_path):
    arrays = dict(np.load(ControlSet.empty(T).save(tmp_path / "ok.npz")))
    np.savez_compressed(tmp_path / "long.npz", **{**arrays, "brightness": np.zeros(MAX_FRAMES + 1, np.float32)})
    with pytest.raises(CadenzaError, match="'brightness' has .* frames"):
        ControlSet.load(tmp_path / "long.npz")  # limits.check_control_npz, given the registry's members
    np.savez_compressed(tmp_path / "many.npz", **{**arrays, "brightness_points": np.zeros((100_001, 2))})
    with pytest.raises(CadenzaError, match="'brightness_points' holds 100,001 events"):
        ControlSet.load(tmp_path / "many.npz")


# ------------------------------------------------------------------ pipeline
def test_resolve_controls_and_summary():
    cs, sources = resolve_controls(T, brightness="0.6", dynamics="crescendo")
    assert cs.given() == ["dynamics", "brightness"] and sources["brightness"] == "0.6"
    np.testing.assert_allclose(cs.brightness, 0.6, rtol=1e-6)
    arr, src = resolve_controls(T, brightness=np.full(T, 0.1))
    assert src["brightness"] == "array" and arr.brightness_mask.all()
    with pytest.raises(CadenzaError, match=r"brightness control has shape \(3,\)"):
        resolve_controls(T, brightness=np.zeros(3))
    with pytest.raises(CadenzaError, match="unknown control 'sparkle'"):
        resolve_controls(T, sparkle="1")
    summary = controls_summary(cs, sources)
    assert list(summary) == [*CONTROL_NAMES, "brightness"]
    assert summary["brightness"] == {"given": True, "coverage": 1.0, "source": "0.6"} and "range_db" in summary["dynamics"]


def test_a_network_not_trained_on_it_refuses_it_clearly():
    with pytest.raises(CadenzaError, match="this model was not trained on the control 'brightness'") as err:
        check_trained_on(["melody", "brightness"], CONTROL_NAMES)
    assert "leave 'brightness' out" in err.value.hint
    check_trained_on(["melody", "rhythm"], CONTROL_NAMES)  # the shipped ones pass
    # a network trained with it: one more MLP on its normalised input, features stacked in registry order
    enc = ControlEncoder(8, 4, names=(*CONTROL_NAMES, "brightness"))
    tensors = controls_to_tensors(_given())
    assert tensors["brightness"].shape == (1, T, 1) and enc.features(tensors).shape == (1, 4 * 8, T)
    assert list(enc.mlps) == [*CONTROL_NAMES, "brightness"]
    shipped = ControlEncoder(8, 4)
    assert list(shipped.mlps) == list(CONTROL_NAMES) and shipped.features(tensors).shape == (1, 3 * 8, T)  # the toy is ignored, not read
    masks = random_control_masks({f"{n}_mask": torch.ones(64, T) for n in control_names()}, torch.Generator().manual_seed(0), p_partial=0.0)
    kept = torch.stack([masks[f"{n}_mask"][:, 0] for n in control_names()], 1)  # (B, 4)
    assert kept.shape == (64, 4) and set(kept.sum(1).tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0} and (kept[:, 3] == 0).any() and (kept[:, 3] == 1).any()


def test_generate_with_the_toy_on_the_shipped_layout_is_one_clear_error(tmp_path):
    from cadenza import Cadenza
    from cadenza.checkpoint import save_model_folder
    from cadenza.config import load_config
    from cadenza.generators.model import build_generator

    cfg = load_config("generator", "debug")
    save_model_folder(tmp_path / "m", build_generator(cfg).state_dict(), cfg)
    gen = Cadenza.load(tmp_path / "m")
    assert gen.trained_controls == CONTROL_NAMES
    with pytest.raises(CadenzaError, match="this model was not trained on the control 'brightness'"):
        gen.generate("x", duration=0.5, steps=1, brightness="0.5")
    with pytest.raises(CadenzaError, match="unknown control 'sparkle'"):
        gen.generate("x", duration=0.5, steps=1, sparkle="0.5")


# ------------------------------------------------------------------ studio
def test_studio_form_parses_builds_and_stores_it(tmp_path):
    limits = Limits()
    req = parse_form({"prompt": "p", "duration": "1", "brightness_mode": "level", "brightness_level": "0.7", "brightness_end": "0.5"}, limits)
    assert req.control("brightness") == {"mode": "level", "start": 0.0, "end": 0.5, "level": 0.7}
    cs = build_controls(req, tmp_path)
    assert cs.given() == ["brightness"] and cs.brightness_mask.sum() == int(0.5 * FRAME_RATE) + 1
    stored = req.to_dict()
    assert stored["brightness"]["level"] == 0.7 and "more" not in stored
    assert GenerationRequest.from_dict(stored).control("brightness") == req.control("brightness")
    with pytest.raises(RequestError, match="brightness_mode: unknown choice 'drawn'"):
        parse_form({"prompt": "p", "duration": "1", "brightness_mode": "drawn"}, limits)
    with pytest.raises(RequestError, match="brightness_level: not a number"):
        parse_form({"prompt": "p", "duration": "1", "brightness_mode": "level", "brightness_level": "bright"}, limits)
    plain = parse_form({"prompt": "p", "duration": "1"}, limits).to_dict()
    assert plain["brightness"] == {"mode": "none"}


# ------------------------------------------------------------------ eval
def test_eval_scores_aggregates_and_tabulates_it():
    given = _given(0.25)
    got = _given(0.75, 0, T)
    scores = compare_controls(given, got)
    assert scores["brightness_mae"] == pytest.approx(0.5) and scores["brightness_frames"] == 50
    assert "melody_accuracy" in scores and list(scores)[-2:] == ["brightness_mae", "brightness_frames"]
    assert BRIGHTNESS.score(given, got) == {"brightness_mae": pytest.approx(0.5), "brightness_frames": 50}
    agg = aggregate_scores([scores, compare_controls(given, given)])
    assert agg["brightness_mae_mean"] == pytest.approx(0.25)
    short = control_adherence(given, got)
    assert short["brightness_err"] == pytest.approx(0.5) and short["melody_acc"] is None
    assert ("brightness",) in subsets_for("all", control_names()) and len(subsets_for("all", control_names())) == 16
    assert subsets_for("paper", control_names())[-1] == control_names()
    assert subsets_for("all") == subsets_for("all", CONTROL_NAMES) and len(subsets_for("all")) == 8  # a model's own controls
    assert ("brightness_mae_mean", "brightness MAE", 1.0, 3) in columns()
    table = table_markdown("I", "Table I", [{"row": "brightness", "n_cases": 2, **agg}])
    assert "brightness MAE" in table and "| brightness | 2 |" in table and "0.250" in table


# ------------------------------------------------------------------ CLI
def test_cli_takes_it_as_a_control_option():
    from cadenza.cli.generate import parse_control_options

    shipped = {"melody": "C4:1", "dynamics": None, "rhythm": None}
    assert parse_control_options(["brightness=0.4"], shipped) == {"brightness": "0.4"}
    with pytest.raises(CadenzaError, match="--control: unknown control 'sparkle'"):
        parse_control_options(["sparkle=1"], shipped)
    with pytest.raises(CadenzaError, match="--control: 'melody' is given twice"):
        parse_control_options(["melody=E4:1"], shipped)
    with pytest.raises(CadenzaError, match="expected NAME=SOURCE"):
        parse_control_options(["brightness"], shipped)
