"""Benchmark: generator training throughput (clips/s) through the Fabric runner, beside the old Trainer loop.

For the ``debug`` and ``small`` generator configs (synthetic clips, so no corpus I/O is timed),
both training paths run the same number of steps on ``--threads`` torch threads:

- ``runner``: ``cadenza.train.runner.fit`` (Fabric, deterministic sampler, safetensors checkpoints);
- ``lightning_trainer`` (the peer): Lightning's own ``L.Trainer`` fitting the same ``GeneratorModule``
  on the same data (no checkpoints; ``trainer_loop`` below);
- with ``--compile``, also ``runner_compiled``: the runner with ``launch.compile=true`` (inductor;
  the first step, which compiles, is excluded like every path's first step).

Throughput is timed between the starts of ``GeneratorModule.training_step`` calls (the first step
— warm-up, allocation — excluded), so both paths are measured the same way; it is clips per second
= steps × global batch / seconds. The two paths alternate per repeat so both see the same machine
load; the load average is recorded because the machine is shared. On a CUDA machine the runner is
also timed on the GPU (``bf16-mixed``).

Run: ``python benchmarks/train.py [--threads 2] [--repeats 1] [--configs debug,small] [--compile]`` →
prints a table and writes ``benchmarks/results/train.json`` + ``.md`` (config, commit, seed, load
average); ``--name train_compile`` writes ``train_compile.json|md`` instead.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cadenza.config import write_json_atomic  # noqa: E402
from cadenza.train.generator import GeneratorModule, build_dataset, collate  # noqa: E402
from cadenza.train.runner import fit  # noqa: E402
from cadenza.train.tasks import get_task, load_task_config  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CASES = {"debug": {"steps": 12, "overrides": ["data.synthetic_clips=64"]}, "small": {"steps": 4, "overrides": ["data.source=synthetic", "data.synthetic_clips=32"]}}


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return "unknown"


class StepClock:
    """Records when each ``GeneratorModule.training_step`` starts (both paths call it once per step)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._orig = GeneratorModule.training_step

    def __enter__(self) -> "StepClock":
        clock, orig = self, self._orig

        def timed(module, batch, batch_idx):
            clock.times.append(time.perf_counter())
            return orig(module, batch, batch_idx)

        GeneratorModule.training_step = timed
        return self

    def __exit__(self, *exc) -> None:
        GeneratorModule.training_step = self._orig

    def clips_per_s(self, batch: int) -> float:
        t = self.times[1:]  # skip the first (warm-up) step
        return (len(t) - 1) * batch / (t[-1] - t[0])


def trainer_loop(config: dict, threads: int) -> None:
    """The peer: ``L.Trainer`` on the module and data the runner would use (mel stats fitted the same way)."""
    import lightning as L
    from torch.utils.data import DataLoader

    torch.set_num_threads(threads)
    L.seed_everything(int(config["train"].get("seed", 0)), verbose=False)
    module = GeneratorModule(config)
    data = build_dataset(config)
    module.fit_mel_stats(data, int(config.get("diffusion", {}).get("stats_clips", 64)))
    loader = DataLoader(data, batch_size=int(config["data"]["batch_size"]), collate_fn=collate, shuffle=True, drop_last=True)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=int(config["train"]["max_steps"]), logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=float(config["train"].get("grad_clip", 0.0)) or None,
    )
    trainer.fit(module, loader)


def run_case(name: str, path: str, threads: int, accelerator: str = "cpu") -> dict:
    case = CASES[name]
    task = get_task("generator")
    overrides = [*case["overrides"], f"train.max_steps={case['steps']}", f"train.threads={threads}", "train.max_minutes=0", "train.checkpoint_minutes=1000"]
    config = load_task_config(task, name, [*overrides, "checkpoint.every_steps=0", "log.progress=false"])
    batch = int(config["data"]["batch_size"])
    out = Path(tempfile.mkdtemp(prefix=f"bench-train-{name}-"))
    try:
        with StepClock() as clock:
            if path in ("runner", "runner_compiled"):
                config["launch"]["compile"] = path == "runner_compiled"
                fit(task, config, out, accelerator=accelerator, precision="bf16-mixed" if accelerator == "gpu" else "32-true")
            else:
                trainer_loop(config, threads)
        return {"config": name, "path": path, "device": accelerator, "steps": case["steps"], "batch": batch, "clips_per_s": clock.clips_per_s(batch)}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="2", help="comma-separated torch thread counts to time, e.g. 1,2")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--configs", default="debug,small")
    parser.add_argument("--compile", action="store_true", help="also time the runner with launch.compile=true")
    parser.add_argument("--name", default="train", help="results file stem under benchmarks/results")
    parser.add_argument("--steps", type=int, default=None, help="steps per run instead of each config's default (more: less noise)")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.steps:
        for case in CASES.values():
            case["steps"] = args.steps
    load_before = os.getloadavg()
    rows: list[dict] = []
    thread_counts = [int(x) for x in str(args.threads).split(",")]
    for rep in range(args.repeats):
        for name in args.configs.split(","):
            for threads in thread_counts:
                order = ("runner", "lightning_trainer") if rep % 2 == 0 else ("lightning_trainer", "runner")
                order += ("runner_compiled",) if args.compile else ()
                for path in order:
                    rows.append({**run_case(name, path, threads), "threads": threads})
                    print(f"{name:6s} {threads} threads {path:18s} {rows[-1]['clips_per_s']:.2f} clips/s", flush=True)
            if torch.cuda.is_available():
                rows.append({**run_case(name, "runner", thread_counts[-1], accelerator="gpu"), "threads": thread_counts[-1]})
    load_after = os.getloadavg()
    summary = []
    for name, threads in [(n, t) for n in args.configs.split(",") for t in thread_counts]:
        sel = [x for x in rows if x["config"] == name and x["threads"] == threads]
        r = float(np.median([x["clips_per_s"] for x in sel if x["path"] == "runner" and x["device"] == "cpu"]))
        p = float(np.median([x["clips_per_s"] for x in sel if x["path"] == "lightning_trainer"]))
        entry = {"config": name, "threads": threads, "runner_clips_per_s": r, "lightning_trainer_clips_per_s": p, "ratio_runner_over_trainer": r / p}
        compiled = [x["clips_per_s"] for x in sel if x["path"] == "runner_compiled"]
        if compiled:
            entry["runner_compiled_clips_per_s"] = float(np.median(compiled))
            entry["ratio_compiled_over_runner"] = entry["runner_compiled_clips_per_s"] / r
        gpu = [x["clips_per_s"] for x in rows if x["config"] == name and x["device"] == "gpu"]
        if gpu:
            entry["runner_gpu_clips_per_s"] = float(np.median(gpu))
            entry["gpu"] = torch.cuda.get_device_name(0)
        summary.append(entry)
    result = {
        "benchmark": "train", "git_commit": commit(), "seed": 0, "threads": thread_counts, "repeats": args.repeats,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "load_avg_before": load_before, "load_avg_after": load_after},
        "cuda": torch.cuda.is_available(), "cases": CASES, "runs": rows, "summary": summary,
        "note": "synthetic clips; clips/s between training_step starts, first step excluded; the machine is shared (see load averages)",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RESULTS / f"{args.name}.json", result)
    compiled = args.compile
    gpu = torch.cuda.is_available()
    lines = [
        "# Generator training throughput: Fabric runner vs. the Lightning Trainer loop",
        "",
        f"commit `{result['git_commit'][:10]}`, torch threads {args.threads}, {args.repeats} repeat(s), seed 0, synthetic clips; "
        f"load average {load_before[0]:.1f} before / {load_after[0]:.1f} after on {os.cpu_count()} cores (shared machine).",
        "",
        "| config | threads | runner clips/s | Trainer clips/s | runner / Trainer |" + (" compiled clips/s | compiled / runner |" if compiled else "")
        + (" runner GPU clips/s |" if gpu else ""),
        "|---|---|---|---|---|" + ("---|---|" if compiled else "") + ("---|" if gpu else ""),
    ]
    for e in summary:
        lines.append(f"| {e['config']} | {e['threads']} | {e['runner_clips_per_s']:.2f} | {e['lightning_trainer_clips_per_s']:.2f} | {e['ratio_runner_over_trainer']:.2f} |"
                     + (f" {e['runner_compiled_clips_per_s']:.2f} | {e['ratio_compiled_over_runner']:.2f} |" if compiled else "")
                     + (f" {e.get('runner_gpu_clips_per_s', float('nan')):.1f} ({e.get('gpu', '')}) |" if gpu else ""))
    lines += [
        "",
        "No GPU was available for this run." if not torch.cuda.is_available() else "",
        "",
        "On a busy 2-core machine, 2 torch threads can be several times slower than 1 (OpenMP threads wait",
        "on each other while other processes hold the cores); compare paths within a row, not across rows.",
        "",
    ]
    tmp = RESULTS / f".{args.name}.md.tmp"
    tmp.write_text("\n".join(lines))
    os.replace(tmp, RESULTS / f"{args.name}.md")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
