"""The one training path: every task trains a step, DDP on 2 CPU processes agrees, kill -9 + resume is exact."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from cadenza.audio import load_audio
from cadenza.cli.train import app
from cadenza.config import available_configs
from cadenza.errors import CadenzaError
from cadenza.train.runner import DeterministicBatchSampler, StridedStream, fit
from cadenza.train.state import DELAY_ENV
from cadenza.train.tasks import TASKS, get_task, load_task_config

REPO = Path(__file__).resolve().parents[2]
GEN = ["data.frames=32", "data.synthetic_clips=8", "log.every_steps=1", "checkpoint.keep_last=5"]
SMALLEST = {
    "generator": ("debug", []), "codec": ("debug", ["data.val_clips=0"]), "vocoder": ("tiny", ["data.source=synthetic"]),
    "beats": ("debug", ["data.source=synthetic"]), "clap": ("debug", ["data.source=synthetic"]), "lm": ("debug", []), "magnet": ("debug", []),
    "instruments": ("debug", ["data.source=synthetic"]),
}


def _cli(out: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cadenza.cli.train", "generator", "debug", *GEN, *args, "--out", str(out)]
    return subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_sampler_is_a_pure_function_of_seed_and_epoch():
    ranks = [DeterministicBatchSampler(20, 3, rank=r, world=2, seed=7) for r in range(2)]
    for s in ranks:
        s.set_epoch(1)
    b0, b1 = list(ranks[0]), list(ranks[1])
    assert len(b0) == len(b1) == 3 and all(len(b) == 3 for b in b0 + b1)
    flat0, flat1 = {i for b in b0 for i in b}, {i for b in b1 for i in b}
    assert not flat0 & flat1  # disjoint ranks
    again = DeterministicBatchSampler(20, 3, rank=0, world=2, seed=7)
    again.set_epoch(1, start_batch=2)
    assert list(again) == b0[2:]  # a resume skips exactly the consumed batches
    again.set_epoch(2)
    assert list(again) != b0  # a new epoch, a new order
    with pytest.raises(CadenzaError, match="fewer than one global batch"):
        DeterministicBatchSampler(5, 3, world=2)
    assert list(StridedStream(range(10), 1, 3, skip=1)) == [4, 7]


@pytest.mark.parametrize("model", sorted(TASKS))
def test_every_task_builds_its_configs_and_trains_a_step(model, tmp_path):
    from toy_codec import save_toy_codec, toy_codec_registered  # tests/toy_codec.py: the token models need a codec

    with toy_codec_registered():
        # four levels: the small configs model a 4-codebook prefix of the codec (debug: all of them)
        codec = [f"codec={save_toy_codec(tmp_path / 'codec', codebooks=4)}"] if model in ("lm", "magnet") else []
        _builds_and_trains_a_step(model, tmp_path, codec)


def _builds_and_trains_a_step(model: str, root: Path, codec: list[str]) -> None:
    task = get_task(model)
    for name in available_configs(task.config_kind):  # every shipped config builds (RAVE's check)
        cfg = load_task_config(task, name, [*codec, *(["data.source=synthetic"] if "source" in task.defaults.get("data", {}) else [])])
        if cfg.get("text_encoder") == "minilm":
            cfg["text_encoder"] = "hash"  # same architecture; the MiniLM weights are not needed to build it
        assert sum(p.numel() for p in task.build_module(cfg).parameters()) > 0
    config_name, overrides = SMALLEST[model]
    cfg = load_task_config(task, config_name, [*codec, *overrides, "train.max_steps=1", "log.every_steps=1"])
    run = root / "run"
    folder = fit(task, cfg, run)
    state, exported = load_file(str(folder / "model.safetensors")), json.loads((folder / "config.json").read_text())
    assert state and all(torch.isfinite(v.float()).all() for v in state.values())
    assert (run / "checkpoints" / "step-000000001" / "COMPLETE").exists()
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 1 and all(v == v for v in log[-1].values())  # no NaN
    assert exported  # a model-folder config to ship
    from cadenza.registry import family_for_task, load_model

    family = family_for_task(model)
    assert (exported["kind"], exported["type"]) == (family.kind, family.type)  # the folder names its family
    assert load_model(folder).family is family  # and loads through the one loader
    assert (run / "logs" / "version_0" / "metrics.csv").read_text().count("\n") >= 2  # header + a row


def test_generator_samples_are_written_and_leave_training_unchanged(tmp_path):
    task = get_task("generator")
    runs = {}
    for name, every in (("plain", 0), ("samples", 1)):
        cfg = load_task_config(task, "debug", [*GEN, "train.max_steps=2", f"log.samples_every_steps={every}"])
        runs[name] = _weights(fit(task, cfg, tmp_path / name))
    names = sorted(p.name for p in (tmp_path / "samples" / "samples").iterdir())
    assert names == [f"{kind}-step000000{s}.{ext}" for kind, ext in (("controls", "png"), ("mel", "png"), ("x0", "wav")) for s in (1, 2)]
    audio = load_audio(tmp_path / "samples" / "samples" / "x0-step0000002.wav")
    assert audio.size == 31 * 256 and np.isfinite(audio).all() and np.abs(audio).max() > 0  # Griffin-Lim of the x0 estimate
    assert not (tmp_path / "plain" / "samples").exists()
    assert all(torch.equal(runs["plain"][k], runs["samples"][k]) for k in runs["plain"])  # logging changed nothing
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "samples" / "tb" / "version_0"), size_guidance={"audio": 0, "images": 0}).Reload()
    assert {"samples/x0"} <= set(events.Tags()["audio"]) and {"samples/mel", "samples/controls"} <= set(events.Tags()["images"])
    assert [e.step for e in events.Audio("samples/x0")] == [1, 2]


def test_cli_list_help_and_errors(tmp_path):
    runner = CliRunner()
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0 and all(name in listed.output for name in TASKS) and "slurm-2x8" in listed.output
    helped = runner.invoke(app, ["generator", "--help"])
    assert helped.exit_code == 0 and "torchrun" in helped.output and "srun" in helped.output
    bad = runner.invoke(app, ["generator", "debug", "--out", str(tmp_path), "--strategy", "horovod"])
    assert isinstance(bad.exception, CadenzaError) and "horovod" in str(bad.exception)
    with pytest.raises(CadenzaError, match="unknown model"):
        get_task("diffwave")


@pytest.mark.slow
def test_two_process_ddp_on_cpu_agrees_and_doubles_the_batch(tmp_path):
    proc = _cli(tmp_path, "data.synthetic_clips=16", "train.max_steps=2", "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-3000:]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["world_size"] == 2 and run["global_batch"] == 2 * run["per_device_batch"] == 8
    ranks = [json.loads((tmp_path / "ranks" / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["digest"] == ranks[1]["digest"] and ranks[0]["step"] == 2  # identical weights on both ranks
    seen = [{i for b in r["first_epoch_batches"] for i in b} for r in ranks]
    assert len(seen[0]) == len(seen[1]) == 8 and not seen[0] & seen[1]  # disjoint samples, all 16 used
    log = [x for x in map(json.loads, (tmp_path / "train_log.jsonl").read_text().splitlines()) if "global_batch" in x]  # not val_ lines
    assert log[-1]["global_batch"] == 8
    one = json.loads((tmp_path / "checkpoints" / "step-000000002" / "state.json").read_text())
    assert one["progress"]["samples_seen"] == 16 and len(one["rng"]) == 2  # both ranks' RNG saved


@pytest.mark.slow
def test_kill_during_checkpoint_write_then_resume_matches_uninterrupted_run(tmp_path):
    task = get_task("generator")
    steps = ["train.max_steps=4", "checkpoint.every_steps=1"]
    ref = fit(task, load_task_config(task, "debug", [*GEN, *steps]), tmp_path / "ref")
    assert ref is not None
    run = tmp_path / "run"
    proc = _cli(run, *steps, env={DELAY_ENV: "4"})
    ckpts = run / "checkpoints"
    deadline = time.monotonic() + 240
    while not list(ckpts.glob(".tmp-step-000000002-*")):  # the second checkpoint is being written
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:] if proc.poll() is not None else "timeout"
        time.sleep(0.05)
    proc.kill()  # SIGKILL inside the write
    proc.wait()
    assert (ckpts / "step-000000001" / "COMPLETE").exists() and not (ckpts / "step-000000002").exists()
    # a damaged, complete-looking newer folder that `latest` points at must be skipped too
    fake = ckpts / "step-000000003"
    fake.mkdir()
    for f in (ckpts / "step-000000001").iterdir():
        (fake / f.name).write_bytes(f.read_bytes())
    (fake / "optim.safetensors").write_bytes(b"\0" * 64)
    (ckpts / "latest").write_text("step-000000003\n")
    with pytest.warns(UserWarning, match="step-000000003"):
        resumed = fit(task, load_task_config(task, "debug", [*GEN, *steps]), run, resume=True)
    assert json.loads((run / "run.json").read_text())["resumed_from"].endswith("step-000000001")
    final, expected = _weights(run / "checkpoints" / "step-000000004"), _weights(tmp_path / "ref" / "checkpoints" / "step-000000004")
    assert final.keys() == expected.keys()
    for key in expected:
        assert torch.equal(final[key], expected[key]), key  # bit-identical to the uninterrupted run
    shipped, shipped_ref = _weights(resumed), _weights(ref)
    assert all(torch.equal(shipped[k], shipped_ref[k]) for k in shipped_ref)  # the exported model too
    with pytest.raises(CadenzaError, match="--resume"):
        fit(task, load_task_config(task, "debug", [*GEN, *steps]), run)


def test_resume_with_another_model_is_refused(tmp_path):
    task = get_task("generator")
    fit(task, load_task_config(task, "debug", [*GEN, "train.max_steps=1"]), tmp_path)
    other = load_task_config(task, "debug", [*GEN, "train.max_steps=2", "model.emb_dim=32"])
    with pytest.raises(CadenzaError, match="does not fit the model"):
        fit(task, other, tmp_path, resume=True)


@pytest.mark.slow
def test_fsdp_on_two_cpu_processes_checkpoints_full_weights_and_resumes_like_ddp(tmp_path):
    """FSDP2 over gloo: 2 steps, a checkpoint that loads into a plain model, a resume to 3 steps equal to DDP's."""
    from cadenza.generators import load_generator
    from cadenza.train.generator import GeneratorModule

    two = ["data.synthetic_clips=16", "checkpoint.every_steps=1", "--devices", "2", "--accelerator", "cpu"]
    runs = {
        "fsdp": [["train.max_steps=2", *two, "--strategy", "fsdp"], ["train.max_steps=3", *two, "--strategy", "fsdp", "--resume"]],
        "ddp": [["train.max_steps=3", *two, "--strategy", "ddp"]],
    }
    for name, launches in runs.items():
        for args in launches:
            proc = _cli(tmp_path / name, *args)
            output, _ = proc.communicate(timeout=300)
            assert proc.returncode == 0, output[-3000:]
            if name == "fsdp" and "--resume" not in args:  # the gathered checkpoint fits a plain one-process model
                cfg = json.loads((tmp_path / name / "config.json").read_text())
                GeneratorModule(cfg).load_state_dict(_weights(tmp_path / name / "checkpoints" / "step-000000002"), strict=True)
    fsdp, ddp = tmp_path / "fsdp", tmp_path / "ddp"
    assert json.loads((fsdp / "run.json").read_text())["resumed_from"].endswith("step-000000002")
    got, want = _weights(fsdp / "checkpoints" / "step-000000003"), _weights(ddp / "checkpoints" / "step-000000003")
    assert got.keys() == want.keys()
    for key in want:  # sharded gradients, optimizer states and the resume agree with DDP
        assert torch.allclose(got[key], want[key], atol=1e-6), key
    net, saved, _ = load_generator(fsdp / "model")
    assert saved["trained"]["steps"] == 3 and sum(p.numel() for p in net.parameters()) > 0


def test_fsdp_is_refused_for_the_multi_backward_vocoder(tmp_path):
    task = get_task("vocoder")
    cfg = load_task_config(task, "tiny", ["data.source=synthetic", "train.max_steps=1"])
    with pytest.raises(CadenzaError, match="fsdp"):
        fit(task, cfg, tmp_path, strategy="fsdp", devices=2)


def test_compiled_run_keeps_plain_keys_resumes_and_equals_eager(tmp_path):
    """``launch.compile`` (here the quick ``aot_eager`` backend: dynamo + AOTAutograd, no C++ build)."""
    import torch._dynamo

    task = get_task("generator")
    steps = ["train.max_steps=2", "checkpoint.every_steps=1"]
    compiled = ["launch.compile=true", "launch.compile_backend=aot_eager"]
    ref_model = _weights(fit(task, load_task_config(task, "debug", [*GEN, *steps]), tmp_path / "eager"))
    ref = _weights(tmp_path / "eager" / "checkpoints" / "step-000000002")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    fit(task, load_task_config(task, "debug", [*GEN, *compiled, "train.max_steps=1"]), tmp_path / "compiled")
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # the net really went through dynamo
    assert _weights(tmp_path / "compiled" / "checkpoints" / "step-000000001").keys() == ref.keys()  # no _orig_mod. prefixes
    shipped = _weights(fit(task, load_task_config(task, "debug", [*GEN, *compiled, *steps]), tmp_path / "compiled", resume=True))
    final = _weights(tmp_path / "compiled" / "checkpoints" / "step-000000002")
    assert shipped.keys() == ref_model.keys() and final.keys() == ref.keys()
    for key in ref:  # compiled, then resumed into a compiled model = eager, uninterrupted
        assert torch.allclose(final[key], ref[key], atol=1e-5), key


def test_validation_is_logged_picks_best_and_leaves_training_unchanged(tmp_path):
    task = get_task("generator")
    steps = [*GEN, "train.max_steps=4", "checkpoint.every_steps=2", "log.val_every_steps=1"]
    plain = _weights(fit(task, load_task_config(task, "debug", [*steps, "data.val_clips=0"]), tmp_path / "plain"))
    shipped = _weights(fit(task, load_task_config(task, "debug", [*steps, "data.val_clips=4"]), tmp_path / "val"))
    assert all(torch.equal(plain[k], shipped[k]) for k in plain)  # validation draws no training randomness
    log = [json.loads(line) for line in (tmp_path / "val" / "train_log.jsonl").read_text().splitlines()]
    val = {x["step"]: x["val_loss"] for x in log if "val_loss" in x}
    assert sorted(val) == [1, 2, 3, 4] and len(set(val.values())) == 4  # every step, and it moves with the weights
    best = json.loads((tmp_path / "val" / "checkpoints" / "best.json").read_text())
    saved = {s: val[s] for s in (2, 4)}  # the checkpointed steps
    assert best["metric"] == "val_loss" and best["step"] == min(saved, key=saved.get) and best["value"] == pytest.approx(saved[best["step"]])
    assert "val_loss" in (tmp_path / "val" / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    no_val = json.loads((tmp_path / "plain" / "checkpoints" / "best.json").read_text())
    assert no_val["metric"] == "loss"  # without a validation set: the training loss, as before


def test_old_beats_and_clap_commands_are_runner_calls_that_resume_and_keep_the_best(tmp_path):
    from cadenza.controls.beat_tracker import NeuralBeatTracker
    from cadenza.train import beats, clap
    from cadenza.train.state import CheckpointManager

    for module, name in ((beats, "beats"), (clap, "clap")):
        out = tmp_path / name
        for steps in (1, 2):  # the second call resumes by itself, as these commands always did
            args = ["--data", "unused", "--out", str(out), "--config", "debug", "data.source=synthetic", f"train.max_steps={steps}", "checkpoint.every_steps=1"]
            assert module.main([*args, "data.val_clips=4"]) == 0
        assert [p.name for p in CheckpointManager(out).folders()] == ["step-000000001", "step-000000002"], name
        assert json.loads((out / "run.json").read_text())["resumed_from"].endswith("step-000000001")
    out = tmp_path / "beats"
    f1 = {x["step"]: x["val_f1"] for x in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if "val_f1" in x}
    best = json.loads((out / "checkpoints" / "best.json").read_text())
    assert sorted(f1) == [1, 2] and best["metric"] == "val_f1" and best["higher_is_better"]
    assert best["value"] == pytest.approx(max(f1.values()))  # the highest F1 wins
    tracker = NeuralBeatTracker.load(out / "best")  # the best checkpoint, exported as a model folder to ship
    assert json.loads((out / "best" / "config.json").read_text())["best"]["name"] == best["name"] and tracker.model is not None
    recall = [x["val_t2a_r@10"] for x in map(json.loads, (tmp_path / "clap" / "train_log.jsonl").read_text().splitlines()) if "val_t2a_r@10" in x]
    clap_best = json.loads((tmp_path / "clap" / "checkpoints" / "best.json").read_text())
    assert len(recall) == 2 and clap_best["metric"] == "val_t2a_r@10" and clap_best["value"] == pytest.approx(max(recall))
