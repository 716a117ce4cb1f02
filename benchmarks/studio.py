"""Benchmark: what the studio adds on top of a bare ``Cadenza.generate`` call, and how it takes a burst.

Peer: the pipeline called directly in this process with the same prompt, controls, seed,
steps and duration. Studio: the same generation through ``cadenza serve``'s HTTP API on
loopback (form post, queue, controls built from the form, generation, analysis of the output,
overlay figure, audio/controls/zip files, SQLite commit, job polling). Both run alternately,
``--repeats`` rounds after one warm-up each; the table shows medians and the ratio.

Then a burst: ``--burst`` simultaneous requests against 1 running + ``--queue`` waiting; it
records how many were accepted and refused, the refusal latency, and the time to drain.

Defaults use the debug generator config with random weights (no trained model needed), so
the numbers are about the serving overhead, not sound quality. Pass ``--model DIR`` to time a
trained model.

Run: ``python benchmarks/studio.py`` → prints the table and writes
``benchmarks/results/studio.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import torch  # noqa: E402

from cadenza.app.config import StudioConfig  # noqa: E402
from cadenza.app.server import BackgroundServer  # noqa: E402
from cadenza.app.studio import Studio  # noqa: E402
from cadenza.pipeline import Cadenza  # noqa: E402

HEADERS = {"X-Requested-With": "cadenza"}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def debug_model(folder: Path) -> Path:
    from cadenza.checkpoint import save_model_folder
    from cadenza.config import load_config
    from cadenza.generators import build_generator

    cfg = load_config("generator", "debug")
    torch.manual_seed(0)
    net = build_generator(cfg)
    with torch.no_grad():
        for conv in [*net.adapter.zero_skips, net.adapter.zero_mid, net.adapter.controls.zero_conv, net.base.decoder.conv_out]:
            torch.nn.init.normal_(conv.weight, std=0.05)
    save_model_folder(folder, net.state_dict(), cfg)
    return folder


def poll(client: httpx.Client, job_id: str) -> dict:
    while True:
        body = client.get(f"/api/jobs/{job_id}").json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.01)


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="generator folder (default: debug config, random weights)")
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--burst", type=int, default=20)
    ap.add_argument("--queue", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "studio")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or debug_model(Path(tmp) / "model")
        gen = Cadenza.load(model)
        studio = Studio(StudioConfig(root=Path(tmp) / "studio", max_concurrent=1, queue=args.queue), generators=[gen])
        form = {
            "prompt": "calm piano ballad", "duration": f"{args.duration:g}", "steps": str(args.steps), "seed": str(args.seed),
            "melody_mode": "notes", "melody_notes": "C4:1 E4:1 G4:2 E4:1 D4:1 C4:2", "dynamics_mode": "shape",
            "dynamics_shape": "swell", "rhythm_mode": "bpm", "bpm": "100",
        }
        direct_kw = dict(melody=form["melody_notes"], dynamics="swell", bpm=100.0, duration=args.duration, seed=args.seed, steps=args.steps)

        def direct() -> float:
            t0 = time.perf_counter()
            gen.generate(form["prompt"], **direct_kw)
            return time.perf_counter() - t0

        with BackgroundServer(studio) as srv, httpx.Client(base_url=srv.url, headers=HEADERS, timeout=600) as client:
            def served() -> tuple[float, dict]:
                t0 = time.perf_counter()
                r = client.post("/api/generate", data=form)
                job = poll(client, r.json()["id"])
                return time.perf_counter() - t0, job["generation"]["info"]["timings"]

            direct(), served()  # warm-up: imports, JIT, first matplotlib figure
            d_times, s_times, stages = [], [], []
            for _ in range(args.repeats):
                d_times.append(direct())
                t, timings = served()
                s_times.append(t)
                stages.append(timings)

            barrier = threading.Barrier(args.burst)

            def one(i: int) -> tuple[int, float, str | None]:
                with httpx.Client(base_url=srv.url, headers=HEADERS, timeout=600) as c:
                    barrier.wait()
                    t0 = time.perf_counter()
                    r = c.post("/api/generate", data={**form, "seed": str(i)})
                    return r.status_code, time.perf_counter() - t0, r.json().get("id")

            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.burst) as pool:
                answers = list(pool.map(one, range(args.burst)))
            accepted = [jid for code, _, jid in answers if code == 202]
            statuses = [poll(client, jid)["status"] for jid in accepted]
            drain = time.perf_counter() - t0
        studio.close()

    med = statistics.median
    refused_lat = [t for code, t, _ in answers if code == 503]
    results = {
        "benchmark": "studio", "git_commit": git_commit(), "seed": args.seed,
        "config": {
            "model": str(args.model or "debug config, random weights"), "duration_s": args.duration, "steps": args.steps,
            "repeats": args.repeats, "threads": args.threads, "burst": args.burst, "max_concurrent": 1, "queue": args.queue,
        },
        "machine": {"cpus": os.cpu_count(), "load_average_1min_before_after": [load_before, os.getloadavg()[0]], "python": platform.python_version(), "torch": torch.__version__},
        "direct_generate_s": {"median": round(med(d_times), 4), "all": [round(t, 4) for t in d_times]},
        "studio_request_s": {"median": round(med(s_times), 4), "all": [round(t, 4) for t in s_times]},
        "ratio_studio_over_direct": round(med(s_times) / med(d_times), 3),
        "overhead_s": round(med(s_times) - med(d_times), 4),
        "studio_stages_median_s": {k: round(med([s.get(k, 0.0) for s in stages]), 4) for k in stages[0]},
        "burst": {
            "requests": args.burst, "accepted": len(accepted), "refused_busy": len(refused_lat), "done": statuses.count("done"),
            "other": sorted({code for code, _, _ in answers} - {202, 503}),
            "refusal_latency_median_s": round(med(refused_lat), 4) if refused_lat else None, "drain_s": round(drain, 3),
        },
    }
    rows = [
        ("per generation, median", f"{results['direct_generate_s']['median']:.3f} s", f"{results['studio_request_s']['median']:.3f} s", f"{results['ratio_studio_over_direct']:.2f}x"),
    ]
    b = results["burst"]
    md = [
        "# Studio overhead and burst handling", "",
        f"git commit `{results['git_commit']}`, seed {args.seed}, {args.duration:g} s clips, {args.steps} steps, "
        f"{args.threads} torch threads, model: {results['config']['model']}; load average before/after "
        f"{results['machine']['load_average_1min_before_after'][0]:.2f}/{results['machine']['load_average_1min_before_after'][1]:.2f}.", "",
        "| measure | `Cadenza.generate` (peer) | studio over HTTP | ratio |", "|---|---|---|---|",
        *[f"| {a} | {x} | {y} | {r} |" for a, x, y, r in rows], "",
        "Studio stages (median s): " + ", ".join(f"{k} {v:g}" for k, v in results["studio_stages_median_s"].items()), "",
        f"The studio adds {results['overhead_s']:.2f} s per generation whatever the model: analysing the output and drawing "
        f"the overlay figure ({results['studio_stages_median_s'].get('analysis_s', 0):.2f} s), then files, the SQLite row, HTTP "
        "and polling. With the debug model the sampling itself is tiny, so the ratio is large; with a trained model sampling "
        "dominates and the ratio falls towards 1.", "",
        f"Burst of {b['requests']} simultaneous requests (1 running + {args.queue} waiting): {b['accepted']} accepted "
        f"({b['done']} done), {b['refused_busy']} refused with 503 busy (median answer {b['refusal_latency_median_s']} s), "
        f"unexpected statuses: {b['other'] or 'none'}; drained in {b['drain_s']:.2f} s.", "",
    ]
    print("\n".join(md))
    write_atomic(args.out.with_suffix(".json"), json.dumps(results, indent=2) + "\n")
    write_atomic(args.out.with_suffix(".md"), "\n".join(md))
    return results


if __name__ == "__main__":
    main()
