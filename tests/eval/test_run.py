"""``cadenza eval`` end to end with a tiny debug generator: tables, reference rows, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cases import fake_corpus

from cadenza.checkpoint import save_model_folder
from cadenza.cli import main
from cadenza.config import load_config
from cadenza.errors import CadenzaError
from cadenza.eval import run as eval_run
from cadenza.eval.cases import load_cases, make_corpus_cases, make_created_cases
from cadenza.generators import build_generator


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = load_config("generator", "debug")
    torch.manual_seed(0)
    net = build_generator(cfg)
    with torch.no_grad():  # an untrained net outputs exactly zero; give it some life
        for conv in [*net.adapter.zero_skips, net.adapter.zero_mid, net.adapter.controls.zero_conv, net.base.decoder.conv_out]:
            torch.nn.init.normal_(conv.weight, std=0.05)
    folder = tmp_path_factory.mktemp("debug_model")
    save_model_folder(folder, net.state_dict(), cfg)
    return folder


@pytest.fixture(scope="module")
def case_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("cases")
    corpus = fake_corpus(root / "corpus", n_test=2, seconds=2.0)
    make_corpus_cases(corpus, root / "extracted", n=2, duration=2.0)
    make_created_cases(root / "created", n=2, seed=0, duration=2.0)
    return root / "extracted", root / "created"


def test_eval_writes_tables_and_resumes(model_dir, case_sets, tmp_path, monkeypatch, capsys):
    calls = []
    real = eval_run.generate_batch

    def counting(*args, **kwargs):
        calls.append(len(args[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(eval_run, "generate_batch", counting)
    out = tmp_path / "report"
    argv = ["eval", *map(str, case_sets), "--model", str(model_dir), "--out", str(out), "--steps", "2", "--embedder", "mel-stats", "--threads", "1"]
    assert main(argv) == 0
    assert calls == [8, 8, 8, 8]  # one batch per case, all eight Table I subsets in it
    captured = capsys.readouterr()
    assert captured.out == "" and "evaluating cases" in captured.err and "4/4" in captured.err  # the bar is on stderr only

    data = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    table1 = {r["row"]: r for r in data["tables"]["I"]}
    expected = ["none", "melody", "dynamics", "rhythm", "melody+dynamics", "melody+rhythm", "dynamics+rhythm", "melody+dynamics+rhythm"]
    assert list(table1) == expected + ["reference", "reference → vocoder"]
    for row in table1:
        assert f"| {row} |" in report
    assert set(data["tables"]) == {"I", "II", "III"} and [r["row"] for r in data["tables"]["II"]] == expected
    assert "Table III" in report and data["tables"]["III"][0]["n_cases"] == 1
    # the known answer: the reference audio against its own extracted controls
    ref = table1["reference"]
    assert ref["melody_accuracy_mean"] >= 0.95 and ref["dynamics_r_micro"] >= 0.95 and ref["n_cases"] == 2
    assert ref["fad"] == pytest.approx(0.0, abs=1e-6) and table1["none"]["fad"] > 0
    assert data["fad_embedder"] == "mel-stats" and data["model_id"].startswith("cadenza-generator") and data["seed"] == 0
    assert data["config"]["steps"] == 2 and len(data["commit"]) >= 7
    assert all(r["rows"]["none"]["clap"] is None or -1 <= r["rows"]["none"]["clap"] <= 1 for r in data["cases"])
    # partial cases are scored inside the span only: fewer melody frames than the clip has
    partial = next(c for c in data["cases"] if c["table"] == "III")
    assert 0 < partial["rows"]["melody"]["scores"]["melody_frames"] < 0.75 * partial["rows"]["melody"]["scores"]["n_frames"]
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert len(figures) == 4 and all((out / "figures" / f).stat().st_size < 150_000 for f in figures)

    calls.clear()
    assert main(argv) == 0
    assert calls == []  # every case came from the cache
    again = json.loads((out / "results.json").read_text())
    assert again["run"]["cases_from_cache"] == 4 and again["tables"] == data["tables"]


def test_cache_is_keyed_by_settings(case_sets, tmp_path):
    case = load_cases(case_sets[1])[0]
    key_a = eval_run.settings_key({"steps": 2, "seed": 0})
    result = {"settings_key": key_a, "cache_version": eval_run.CACHE_VERSION, "rows": {}}
    (tmp_path / f"{case.id}.json").write_text(json.dumps(result))
    assert eval_run.load_cached(tmp_path, case, key_a) == result
    assert eval_run.load_cached(tmp_path, case, eval_run.settings_key({"steps": 3, "seed": 0})) is None


def test_cache_is_keyed_by_case_contents(case_sets, tmp_path):
    """A case set remade under the same ids with other controls must not reuse stale results."""
    import shutil

    from cadenza.controls import ControlSet

    root = tmp_path / "cases"
    shutil.copytree(case_sets[1], root)
    case = load_cases(root)[0]
    key = eval_run.settings_key({"steps": 2, "seed": 0})
    digest = eval_run.case_digest(case, root)
    result = {"settings_key": key, "cache_version": eval_run.CACHE_VERSION, "case_digest": digest, "rows": {}}
    (tmp_path / f"{case.id}.json").write_text(json.dumps(result))
    assert eval_run.load_cached(tmp_path, case, key, digest) == result
    controls = ControlSet.load(root / case.npz)
    controls.dynamics_mask[:] = 0
    controls.save(root / case.npz)
    assert eval_run.case_digest(case, root) != digest
    assert eval_run.load_cached(tmp_path, case, key, eval_run.case_digest(case, root)) is None


def test_bad_arguments_are_clear_errors(model_dir, case_sets, tmp_path):
    with pytest.raises(CadenzaError, match="unknown --subsets 'some'"):
        eval_run.run_eval(case_sets[1], tmp_path / "r", model=model_dir, subsets="some")
    with pytest.raises(CadenzaError, match="no cases.jsonl"):
        eval_run.run_eval(tmp_path, tmp_path / "r", model=model_dir)
    with pytest.raises(CadenzaError, match="appears in both"):
        eval_run.run_eval([case_sets[1], case_sets[1]], tmp_path / "r", model=model_dir)


def test_failed_flac_write_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "rows" / "none.flac"
    eval_run._write_flac(path, np.zeros(2205, np.float32))
    before = path.read_bytes()

    def half_write(file, *args, **kwargs):
        Path(file).write_bytes(b"fLaC half")
        raise OSError("disk full")

    monkeypatch.setattr(eval_run.sf, "write", half_write)
    with pytest.raises(OSError, match="disk full"):
        eval_run._write_flac(path, np.ones(2205, np.float32))
    assert [p.name for p in path.parent.iterdir()] == ["none.flac"] and path.read_bytes() == before


def test_batched_rows_equal_single_generate(model_dir, case_sets):
    from cadenza import Cadenza

    gen = Cadenza.load(model_dir)
    case = load_cases(case_sets[0])[0]
    given = case.load_controls(case_sets[0])
    batch = eval_run.generate_batch(gen, case.prompt, [given.select(()), given], case.duration, 7, 2, None)
    for row, cs in zip(batch, (given.select(()), given)):
        single, _ = gen.generate(case.prompt, controls=cs, duration=case.duration, seed=7, steps=2)
        np.testing.assert_allclose(row, single, atol=1e-3)
    assert np.abs(batch[0] - batch[1]).max() > 1e-2  # the controls do change the output


def test_eval_with_control_guidance_records_it_and_judges_every_row(model_dir, case_sets, tmp_path):
    plain = eval_run.run_eval(case_sets[1], tmp_path / "plain", model=model_dir, steps=2, subsets="three", embedder="none", max_figures=0)
    guided = eval_run.run_eval(case_sets[1], tmp_path / "guided", model=model_dir, steps=2, subsets="three", embedder="none",
                               max_figures=0, control_cfg="melody=3,rhythm=1")
    assert "control_cfg" not in plain["config"] and guided["config"]["control_cfg"] == {"melody": 3.0, "rhythm": 1.0}
    assert "control cfg melody=3, rhythm=1" in (tmp_path / "guided" / "report.md").read_text()
    rows = [r for case in guided["cases"] for r in case["rows"].values()]
    assert [r["subset"] for r in rows] == [["melody", "dynamics", "rhythm"]] * len(rows)
    assert all(set(r["judges"]) >= {"dsp_beat_f1", "spectral_flatness", "bp_melody_f1"} for r in rows)
    assert "dsp_beat_f1_mean" in guided["tables"]["II"][0]
    a = plain["cases"][0]["rows"]["melody+dynamics+rhythm"]["scores"]
    b = guided["cases"][0]["rows"]["melody+dynamics+rhythm"]["scores"]
    assert a != b  # the guided output differs, so its scores do
    with pytest.raises(CadenzaError, match="control_cfg"):
        eval_run.run_eval(case_sets[1], tmp_path / "bad", model=model_dir, control_cfg="loud")
