"""Benchmark: what the studio adds on top of a bare ``Cadenza.generate`` call, and how it takes a burst.

Peer: the pipeline called directly in this process with the same prompt, controls, seed,
steps and duration. Studio: the same generation through ``cadenza serve``'s HTTP API on
loopback (form post, queue, controls built from the form, generation, analysis of the output,
overlay figure, audio/controls/zip files, SQLite commit, job polling). Both run alternately,
``--repeats`` rounds after one warm-up each; the table shows medians and the ratio.

Then a burst: ``--burst`` simultaneous requests against 1 running + ``--queue`` waiting; it
records how many were accepted and refused, latency percentiles (every answer, the 503 refusals,
and post-to-finished for the accepted), and the time to drain. Last, a kill -9 of a real
``cadenza serve`` process mid-job and a restart on the same root: what the kill left in
``staging/``, and whether every accepted job then finished with nothing left behind.

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


def percentiles(values: list[float]) -> dict[str, float] | None:
    """p50 / p90 / p99 / max of latencies (linear interpolation), or None without any."""
    if not values:
        return None
    import numpy as np

    arr = np.asarray(values, dtype=np.float64)
    return {"n": len(values), **{f"p{q}": round(float(np.percentile(arr, q)), 4) for q in (50, 90, 99)}, "max": round(float(arr.max()), 4)}


def _start_serve(model: Path, root: Path, args: argparse.Namespace) -> tuple[subprocess.Popen, str, float]:
    """``cadenza serve`` as a user runs it (its own process), on a free port; returns (process, url, seconds to ready)."""
    cmd = [sys.executable, "-m", "cadenza", "serve", "--model", str(model), "--root", str(root), "--port", "0", "--no-warmup",
           "--max-concurrent", "1", "--queue", "8", "--threads", str(args.threads)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={**os.environ, "COLUMNS": "400"})
    for line in proc.stderr:
        if "ready" in line and "http://" in line:
            url = line.split(" at ", 1)[1].split()[0]
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # keep the pipe drained
            return proc, url, time.perf_counter() - t0
    raise RuntimeError(f"cadenza serve did not start (exit {proc.wait()})")


def kill_and_restart(model: Path, root: Path, args: argparse.Namespace, n_jobs: int = 6) -> dict:
    """Queue ``n_jobs`` in a real ``cadenza serve``, kill -9 it while the first runs, start it again on the same root.

    Counts what the kill left in ``staging/``, how each job id answers after the restart, and
    what is left behind once they are all finished.
    """
    form = {"prompt": "kill test", "duration": f"{args.duration:g}", "steps": str(max(args.steps * 4, 16)), "rhythm_mode": "bpm", "bpm": "100"}
    proc, url, _ = _start_serve(model, root, args)
    ids = []
    try:
        with httpx.Client(base_url=url, headers=HEADERS, timeout=60) as c:
            for i in range(n_jobs):
                r = c.post("/api/generate", data={**form, "seed": str(i)})
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
            while c.get(f"/api/jobs/{ids[0]}").json()["status"] != "running":
                time.sleep(0.01)
            time.sleep(0.2)  # mid-job
            before_kill = c.get("/api/health").json()["queue"]
    finally:
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait()
    staged = sorted(p.name for p in (root / "staging").iterdir())
    proc, url, ready_s = _start_serve(model, root, args)
    t0 = time.perf_counter()
    try:
        with httpx.Client(base_url=url, headers=HEADERS, timeout=60) as c:
            ends = [poll(c, gid)["status"] for gid in ids]
            finished_s = time.perf_counter() - t0
            total = c.get("/api/history?limit=500").json()["total"]
    finally:
        proc.terminate()
        proc.wait(30)
    return {
        "jobs": n_jobs, "queue_at_kill": before_kill, "staged_after_kill": len(staged), "staged_ids_match": staged == sorted(ids),
        "statuses_after_restart": {s: ends.count(s) for s in sorted(set(ends))}, "history_rows": total,
        "left_in_staging": len(list((root / "staging").iterdir())), "generation_folders": len(list((root / "generations").iterdir())),
        "restart_ready_s": round(ready_s, 2), "all_finished_after_restart_s": round(finished_s, 2),
    }


def kill_restart_text(r: dict) -> str:
    q = r["queue_at_kill"]
    return (
        f"kill -9 mid-job, then restart (a real `cadenza serve` process, {r['jobs']} jobs queued; at the kill "
        f"{q['running']} running and {q['waiting']} waiting): the kill left {r['staged_after_kill']} jobs in staging/ "
        f"({'exactly the accepted ids' if r['staged_ids_match'] else 'NOT the accepted ids'}); the restarted studio was ready in "
        f"{r['restart_ready_s']:.2f} s and requeued them under their own ids: {r['statuses_after_restart']} "
        f"{r['all_finished_after_restart_s']:.2f} s later; history rows {r['history_rows']}, generation folders "
        f"{r['generation_folders']}, left in staging/ {r['left_in_staging']} (nothing lost, nothing left behind)."
    )


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

            def one(i: int) -> tuple[int, float, str | None, float | None]:
                """(status, answer latency, job id, seconds from the post to the finished generation)."""
                with httpx.Client(base_url=srv.url, headers=HEADERS, timeout=600) as c:
                    barrier.wait()
                    t0 = time.perf_counter()
                    r = c.post("/api/generate", data={**form, "seed": str(i)})
                    answered = time.perf_counter() - t0
                    jid = r.json().get("id")
                    if r.status_code != 202:
                        return r.status_code, answered, jid, None
                    status = poll(c, jid)["status"]
                    return r.status_code, answered, jid if status == "done" else None, time.perf_counter() - t0

            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.burst) as pool:
                answers = list(pool.map(one, range(args.burst)))
            accepted = [jid for code, _, jid, _ in answers if code == 202]
            statuses = ["done" if jid else "failed" for code, _, jid, _ in answers if code == 202]
            drain = time.perf_counter() - t0
        studio.close()
        restart = kill_and_restart(model, Path(tmp) / "killed", args)

    med = statistics.median
    refused_lat = [t for code, t, _, _ in answers if code == 503]
    answer_lat = [t for _, t, _, _ in answers]
    done_lat = [t for code, _, _, t in answers if code == 202 and t is not None]
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
            "other": sorted({code for code, _, _, _ in answers} - {202, 503}),
            "refusal_latency_median_s": round(med(refused_lat), 4) if refused_lat else None, "drain_s": round(drain, 3),
            "answer_latency_s": percentiles(answer_lat), "refusal_latency_s": percentiles(refused_lat),
            "accepted_done_latency_s": percentiles(done_lat),
        },
        "kill_restart": restart,
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
        "| burst latency (s) | p50 | p90 | p99 | max |", "|---|---|---|---|---|",
        *[f"| {label} | " + " | ".join(f"{b[key][q]:.3f}" if b[key] else "-" for q in ("p50", "p90", "p99", "max")) + " |"
          for label, key in (("answer to every post (202 or 503)", "answer_latency_s"), ("503 busy answers", "refusal_latency_s"),
                             ("accepted: post to finished generation", "accepted_done_latency_s"))], "",
        kill_restart_text(restart), "",
    ]
    print("\n".join(md))
    write_atomic(args.out.with_suffix(".json"), json.dumps(results, indent=2) + "\n")
    write_atomic(args.out.with_suffix(".md"), "\n".join(md))
    return results


if __name__ == "__main__":
    main()
