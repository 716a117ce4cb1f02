"""The instrument-family judge: taxonomy, prompt parsing, the classifier's training, folders and protocol."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cadenza.audio import SAMPLE_RATE, num_frames, save_audio
from cadenza.config import load_config
from cadenza.data.arrange import BASS_PROGRAMS, CHORD_PROGRAMS, ENSEMBLES, INSTRUMENT_NAMES, MELODY_PROGRAMS
from cadenza.errors import CadenzaError
from cadenza.eval.cases import _INSTRUMENTS
from cadenza.eval.instruments import (
    DEFAULT_VOCABULARY, FAMILIES, FAMILY_NAMES, InstrumentClassifier, InstrumentNet, average_precision, chance_rate,
    classification_metrics, family_of_program, judge_scores, named_families, program_targets,
)
from cadenza.registry import load_model
from cadenza.train.instruments import InstrumentModule, instrument_loss, synthetic_corpus

SR = SAMPLE_RATE
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def debug_config() -> dict:
    return load_config("instruments", "debug")


@pytest.fixture
def classifier(debug_config) -> InstrumentClassifier:
    torch.manual_seed(0)
    return InstrumentClassifier(InstrumentNet(debug_config["model"]), {"name": "instruments-debug", "model": debug_config["model"]})


# ---------------------------------------------------------------------------------------------- taxonomy and parsing
def test_taxonomy_covers_every_program_the_arranger_can_pick() -> None:
    pickable = set(MELODY_PROGRAMS) | set(CHORD_PROGRAMS) | set(BASS_PROGRAMS) | {p for progs in ENSEMBLES.values() for p in progs}
    assert pickable <= set(INSTRUMENT_NAMES)
    assert all(family_of_program(p) is not None for p in INSTRUMENT_NAMES)
    listed = [p for fam in FAMILIES for p in fam.programs]
    assert len(listed) == len(set(listed)) and set(listed) <= set(range(128))  # at most one family per GM program
    assert len(set(FAMILY_NAMES)) == len(FAMILY_NAMES)
    assert family_of_program(6) == "harpsichord" and family_of_program(43) == "strings" and family_of_program(91) == "synth pad"
    assert family_of_program(118) is None and family_of_program(47) is None  # synth drum, timpani: percussion


def test_every_prompt_phrase_and_program_name_parses() -> None:
    named = [named_families(p) for p in _INSTRUMENTS]
    assert all(named)
    assert set().union(*named) == set(DEFAULT_VOCABULARY)  # the default candidates are what the eval's prompts name
    assert named_families("flute and strings") == {"pipes", "strings"}
    assert named_families("clarinet and piano") == {"reeds", "piano"}
    assert named_families("A calm waltz played on string quartet.") == {"strings"}
    assert chance_rate(named) == pytest.approx(1.25 / 7)
    assert all(named_families(f"a {name} duo") == {name} for name in FAMILY_NAMES)
    for program, name in INSTRUMENT_NAMES.items():
        assert named_families(f"played on {name}") == {family_of_program(program)}, name


def test_captions_name_their_instruments_and_not_their_genre() -> None:
    caption = "A warm Scottish air played on vibraphone, slow strings and contrabass with a steady dance beat, moderato at 108 BPM."
    assert named_families(caption) == {"chromatic percussion", "strings"}
    assert named_families("Romantic piano piece by Clara Schumann for harp and choir pad") == {"harp", "synth pad"}
    assert named_families("traditional fiddle tune, Bass clarinet, VIOLINS, pan-flute, drums") == {"reeds", "strings", "pipes"}
    assert named_families("Woodwinds play a march") == {"reeds", "pipes"}
    assert named_families("harpsichords and a harp") == {"harpsichord", "harp"}
    assert named_families("a sunny day") == frozenset()


def test_program_targets_skip_unknown_programs() -> None:
    presence, lead = program_targets([[73, 48, 33], [118, 0], []])
    fams = list(FAMILY_NAMES)
    assert presence[0, [fams.index("pipes"), fams.index("strings"), fams.index("bass")]].tolist() == [1, 1, 1] and presence[0].sum() == 3
    assert lead.tolist() == [fams.index("pipes"), -1, -1]  # an unknown first program has no lead target
    assert presence[1].sum() == 1 and presence[2].sum() == 0


# ---------------------------------------------------------------------------------------------- protocol
def test_recognised_is_the_top_candidate_among_the_vocabulary() -> None:
    fams = ("piano", "organ", "strings", "synth lead")
    scores = np.array([
        [0.1, 0.2, 0.3, 0.9],  # top overall is outside the vocabulary; among the candidates strings wins
        [0.8, 0.1, 0.3, 0.0],
        [0.8, 0.1, 0.3, 0.0],
        [0.8, 0.1, 0.3, 0.0],
    ])
    named = [{"strings"}, {"strings", "organ"}, {"piano"}, {"synth lead"}]
    top, rec = judge_scores(scores, named, fams, vocabulary=("piano", "organ", "strings"))
    assert top == ["strings", "piano", "piano", "piano"]
    assert rec == [True, False, True, None]  # the last prompt names no candidate: not judged
    assert chance_rate(named, ("piano", "organ", "strings")) == pytest.approx((1 + 2 + 1) / 3 / 3)
    with pytest.raises(CadenzaError, match="not among"):
        judge_scores(scores, named, fams, vocabulary=("harp",))
    with pytest.raises(CadenzaError, match="one score row per prompt"):
        judge_scores(scores[:2], named, fams, vocabulary=("piano",))


def test_average_precision_and_metrics() -> None:
    targets = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    perfect = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.1, 0.2]])
    np.testing.assert_allclose(average_precision(perfect, targets), [1.0, 1.0])
    swapped = np.array([[0.1, 0.9], [0.9, 0.1], [0.8, 0.2], [0.2, 0.3]])
    np.testing.assert_allclose(average_precision(swapped, targets), [(1 / 2 + 2 / 4) / 2, 1 / 4])
    assert np.isnan(average_precision(perfect, np.zeros((4, 2)))).all()
    fams = ("piano", "strings")
    m = classification_metrics(perfect, perfect, targets, np.array([0, 1, 0, -1]), ["piano", "strings", "piano", "piano"], fams, ("piano", "strings"))
    assert m["lead_acc"] == 1.0 and m["presence_map"] == 1.0 and m["presence_f1"] == 1.0
    assert m["recognised_presence"] == 0.75 and m["judged_clips"] == 4 and m["recognised_chance"] == 0.5


# ---------------------------------------------------------------------------------------------- training
def test_debug_config_loss_falls_on_synthetic_tones(debug_config) -> None:
    torch.manual_seed(0)
    corpus = synthetic_corpus(8, 32, seed=0)
    assert [named_families(c) for c in corpus.captions] == [{FAMILY_NAMES[i] for i in np.flatnonzero(row)} for row in corpus.presence]
    module = InstrumentModule(debug_config)
    batch = (torch.stack([m.float() for m in corpus.mels]), torch.from_numpy(corpus.presence), torch.from_numpy(corpus.lead))
    opt = torch.optim.Adam(module.model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = module.training_step(batch, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0] and int(module.step_count) == 25
    p, q = torch.zeros(2, 3), torch.zeros(2, 3)
    total, bce, ce = instrument_loss(p, q, torch.zeros(2, 3), torch.tensor([-1, -1]))
    assert float(ce) == 0.0 and float(total) == pytest.approx(np.log(2))  # no lead targets: CE adds nothing


def test_debug_run_exports_a_judge_with_its_numbers(tmp_path) -> None:
    from cadenza.train.runner import fit_folder

    folder = fit_folder("instruments", "debug", ["train.max_steps=3"], tmp_path / "run", threads=1)
    config = json.loads((folder / "config.json").read_text())
    assert (config["kind"], config["type"], config["train_step"]) == ("instruments", "instrument-cnn", 3)
    assert config["judge"]["head"] in ("presence", "lead") and config["judge"]["vocabulary"] == list(DEFAULT_VOCABULARY)
    assert {"lead_acc", "presence_map", "presence_f1", "recognised_presence", "recognised_lead"} <= set(config["valid"]) and "test" in config
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert any("val_lead_acc" in entry for entry in log)
    assert isinstance(load_model(folder).model, InstrumentClassifier)


# ---------------------------------------------------------------------------------------------- folders
def test_save_load_round_trip_gives_identical_outputs(tmp_path, classifier, rng) -> None:
    folder = classifier.save(tmp_path / "clf", {"judge": {"head": "lead", "vocabulary": ["piano", "strings"]}})
    loaded = load_model(folder)
    again = loaded.model
    assert isinstance(again, InstrumentClassifier) and loaded.family.key == "instruments/instrument-cnn"
    assert again.head == "lead" and again.vocabulary == ("piano", "strings")
    clips = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (SR // 2, SR // 3, SR // 2)]
    for a, b in zip(classifier.predict(clips), again.predict(clips)):
        np.testing.assert_array_equal(a, b)
    presence, lead = again.predict(clips)
    assert presence.shape == lead.shape == (3, len(FAMILY_NAMES)) and np.allclose(lead.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(again.predict(clips[1:2])[0], presence[1:2], atol=1e-6)  # a clip's batch does not change it


def test_damaged_folders_are_one_clear_error(tmp_path, classifier) -> None:
    folder = classifier.save(tmp_path / "clf")
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CadenzaError, match="corrupt or truncated"):
        InstrumentClassifier.load(folder)
    (folder / "model.safetensors").write_bytes(weights)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model": {**config["model"], "families": ["piano", "organ"]}}))
    with pytest.raises(CadenzaError, match="weights do not match"):
        InstrumentClassifier.load(folder)
    (folder / "config.json").write_text(json.dumps({**config, "judge": {"vocabulary": ["kazoo"]}}))
    with pytest.raises(CadenzaError, match="lacks: kazoo"):
        InstrumentClassifier.load(folder)
    (folder / "config.json").write_text(json.dumps({"kind": "clap", "type": "clap-cnn", "model": {}}))
    with pytest.raises(CadenzaError, match="not a CNN instrument classifier model folder"):
        InstrumentClassifier.load(folder)


def test_judge_returns_named_families_scores_and_verdicts(classifier, rng) -> None:
    clips = [(0.1 * rng.standard_normal(SR // 2)).astype(np.float32) for _ in range(3)]
    prompts = ["A calm waltz played on flute and strings.", "A march played on organ.", "A tune on a kazoo."]
    verdicts = classifier.judge(clips, prompts)
    presence, _ = classifier.predict(clips)
    top, rec = judge_scores(presence, [named_families(p) for p in prompts])
    assert [v.top for v in verdicts] == top and [v.recognised for v in verdicts] == rec and rec[2] is None
    assert verdicts[0].named == ("strings", "pipes") and set(verdicts[0].scores) == set(FAMILY_NAMES)
    assert json.loads(json.dumps(verdicts[0].to_dict()))["head"] == "presence"
    assert [v.head for v in classifier.judge(clips, prompts, head="lead")] == ["lead"] * 3
    at_44k = classifier.judge([np.repeat(clips[0], 2)], prompts[:1], sample_rate=2 * SR)[0]
    assert at_44k.named == verdicts[0].named  # resampled to the canonical rate first
    with pytest.raises(CadenzaError, match="one prompt per clip"):
        classifier.judge(clips, prompts[:2])
    with pytest.raises(CadenzaError, match="mono"):
        classifier.judge([np.zeros((2, SR // 4), np.float32)], prompts[:1])


def test_the_shipped_classifier_records_its_held_out_numbers(rng) -> None:
    from cadenza.eval.instruments import WEIGHTS_DIR, judge_instruments, shipped_weights_available

    assert shipped_weights_available(), "cadenza/weights/instruments must hold model.safetensors + config.json"
    assert (WEIGHTS_DIR / "model.safetensors").stat().st_size < 3_000_000
    config = json.loads((WEIGHTS_DIR / "config.json").read_text())
    assert config["model"]["families"] == list(FAMILY_NAMES)  # the taxonomy it was trained on is today's
    for split in ("valid", "test"):
        assert {"lead_acc", "presence_map", "presence_f1", "recognised_presence", "recognised_lead", "recognised_chance"} <= set(config[split])
    head = config["judge"]["head"]
    assert config["valid"][f"recognised_{head}"] == max(config["valid"]["recognised_presence"], config["valid"]["recognised_lead"])
    (verdict,) = judge_instruments([(0.1 * rng.standard_normal(SR)).astype(np.float32)], "played on organ")
    assert verdict.head == head and verdict.named == ("organ",) and verdict.top in DEFAULT_VOCABULARY


# ---------------------------------------------------------------------------------------------- the benchmark
def _fake_report(root: Path, rng: np.random.Generator) -> Path:
    """A report folder with three created cases (two rows each), one extracted case, and its audio cache."""
    report, cache = root / "report-cc7", root / "report-cc7" / "cache"
    cache.mkdir(parents=True)
    cases = []
    for i, prompt in enumerate(["A calm waltz played on piano.", "A solemn march played on brass ensemble.", "A jig played on flute and strings.", "extracted"]):
        rows = {}
        for row in ("none", "melody+dynamics+rhythm"):
            name = f"c{i}-{row}.wav"
            sf.write(cache / name, (0.1 * rng.standard_normal(SR // 2)).astype(np.float32), SR)
            rows[row] = {"audio": name}
        kind = "extracted" if prompt == "extracted" else "created"
        cases.append({"case": {"id": f"c-{i}", "prompt": prompt, "kind": kind}, "rows": rows})
    (report / "results.json").write_text(json.dumps({"config": {"control_cfg": 7.0}, "cases": cases}))
    return report


def _fake_corpus(root: Path, rng: np.random.Generator) -> Path:
    rows = []
    for i, (programs, caption) in enumerate([([40, 42], "played on violin and cello"), ([0, 24], "played on piano and nylon guitar"), ([80], "played on square lead synth")]):
        audio = (0.1 * rng.standard_normal(SR // 2)).astype(np.float32)
        save_audio(root / f"clip{i}.wav", audio)
        rows.append({
            "id": f"clip{i}", "path": f"clip{i}.wav", "duration": 0.5, "n_samples": audio.size, "n_frames": num_frames(audio.size),
            "caption": caption, "captions": [caption], "tags": [], "source": "corpus", "work": f"w{i}", "split": "test",
            "bpm": None, "meter": None, "key": None, "programs": programs, "controls": {"extracted": None},
        })
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_instrument_following_benchmark_runs_on_a_fake_report(tmp_path, classifier, rng) -> None:
    from cadenza.eval.clap import Clap, ClapModel

    torch.manual_seed(0)
    clap = Clap(ClapModel(load_config("clap", "debug")["model"]), name="clap-debug").save(tmp_path / "clap")
    clf = classifier.save(tmp_path / "clf")
    report = _fake_report(tmp_path, rng)
    data = _fake_corpus(tmp_path / "corpus", rng)
    spec = importlib.util.spec_from_file_location("instrument_following", REPO / "benchmarks" / "instrument_following.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "out"
    result = bench.main([str(report), "--clap", str(clap), "--classifier", str(clf), "--data", str(data), "--out", str(out)])
    rows = result["reports"][str(report)]
    for row in ("none", "melody+dynamics+rhythm"):
        for judge in ("clap", "classifier"):
            s = rows[row][judge]
            assert s["cases"] == 3 and 0 <= s["recognised"] <= 3 and s["wilson95"][0] <= s["rate"] <= s["wilson95"][1]
        assert rows[row]["clap"]["chance"] == pytest.approx(1 / 8)
        assert rows[row]["classifier"]["chance"] == pytest.approx((1 + 1 + 2) / 3 / 7)
    real = result["real"]  # the synth clip names no candidate phrase: two clips judged
    assert real["clap"]["cases"] == real["classifier"]["cases"] == 2
    md = (out / "instrument_following.md").read_text()
    assert "real corpus test clips" in md and md.count("| report-cc7 |") == 2
    assert json.loads((out / "instrument_following.json").read_text())["judges"]["classifier"] == "instruments-debug"
