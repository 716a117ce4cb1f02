"""Can a change to the guidance layout keep the prompt's instrument under the controls? (valid cases)

Issue #17 asks that the instrument named in the prompt be heard; the instrument classifier hears
it in about 70 % of text-only outputs but in fewer once all three controls and their guidance are
given. Two sampling-time layouts that cost no extra network pass were tried against the default:

- **controls free in the null branch** (InstructPix2Pix's layout): text CFG pushes along
  "prompt" minus "null prompt" and, by default, both branches carry the controls (Music
  ControlNet's form), so the direction is what the prompt adds given the controls. Here the
  null-prompt branch gets no controls, so the text direction is measured where the model follows
  the prompt freely.
- **guidance interval**: control and downbeat guidance only at timesteps t ≥ T (of 1000), text
  CFG alone below, on the view that late, low-noise steps shape timbre rather than structure
  (Kynkäänniemi et al. 2024 limit guidance to an interval for the same kind of reason).

Valid cases only, at the model's other defaults, all three controls. The rule, fixed before the
results: score = the instrument classifier's recognised rate on the 24 created valid cases; a
candidate must keep mean(melody, dynamics r, beat F1) within 1 point, downbeat F1 within 2,
basic-pitch F1 within 1, DSP beat F1 within 2.5, flatness and FAD (Table I) within +25 %; the best
admissible one wins only if it beats the default by more than one case (1/24), else the default
stays.

    python benchmarks/instrument_guidance_valid.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from downbeat_guidance import summary  # noqa: E402
from instrument_following import main as instrument_main  # noqa: E402
from valid_sweep import failures, header, load_for_valid  # noqa: E402

RESULTS = Path(__file__).parent / "results"
ROW = "melody+dynamics+rhythm"


def free_null_branch() -> Callable[[], None]:
    """Patch the branch layout so the null-prompt branch has every control's mask zeroed; returns the undo."""
    import cadenza.generators.diffusion as diffusion
    from cadenza.conditioning.cfg import Branches, without_controls

    layout = diffusion.guidance_branches

    def patched(text, controls, null, cfg, control_cfg, names, downbeat_cfg=0.0):
        branches = layout(text, controls, null, cfg, control_cfg, names, downbeat_cfg=downbeat_cfg)
        if not branches.text_guided:
            return branches
        b, free = len(text), without_controls(controls, [n for n in names if f"{n}_mask" in controls])
        stacked = {k: v.clone() for k, v in branches.controls.items()}
        for k in stacked:
            stacked[k][b : 2 * b] = free[k]
        return Branches(branches.text, stacked, branches.n, branches.text_guided, branches.scales, branches.frame_masks)

    diffusion.guidance_branches = patched
    return lambda: setattr(diffusion, "guidance_branches", layout)


def guidance_interval(t_min: int) -> Callable[[], None]:
    """Patch the denoiser so control and downbeat terms act only at timesteps ≥ ``t_min``; returns the undo."""
    from cadenza.conditioning.cfg import guide_multi
    from cadenza.generators.diffusion import GuidedDenoiser

    call = GuidedDenoiser.__call__

    def patched(self, x, t):
        if int(t) >= t_min or self.n_branches == 1:
            return call(self, x, t)
        import torch

        tt = torch.full((self.b * self.n_branches,), int(t), dtype=torch.long)
        preds = self.model(torch.cat([x] * self.n_branches), tt, self.text_in, self.controls_in).chunk(self.n_branches)
        return guide_multi(preds[0], preds[1] if self.text_guided else None, self.text_scale, [], [], [])

    GuidedDenoiser.__call__ = patched
    return lambda: setattr(GuidedDenoiser, "__call__", call)


CANDIDATES: dict[str, tuple[str, Callable[[], Callable[[], None]] | None]] = {
    "default (controls in both text branches, guidance at every step)": ("given", None),
    "controls free in the null branch": ("free", free_null_branch),
    "control and downbeat guidance at t ≥ 200 only": ("interval200", lambda: guidance_interval(200)),
    "control and downbeat guidance at t ≥ 400 only": ("interval400", lambda: guidance_interval(400)),
}


def classifier_rate(report: Path) -> float:
    data = instrument_main([str(report), "--data", "/nonexistent", "--out", str(report / "instruments")])
    return 100 * data["reports"][str(report)][ROW]["classifier"]["rate"]


FLOORS = (("controls_mean", 1.0, "melody/dynamics/beats"), ("downbeat_f1_mean", 2.0, "downbeat F1"),
          ("bp_melody_f1_mean", 1.0, "basic-pitch F1"), ("dsp_beat_f1_mean", 2.5, "DSP beat F1"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=["runs/eval/valid-extracted", "runs/eval/valid-created"])
    ap.add_argument("--work", default="runs/eval/instrument-guidance-valid")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "instrument_guidance_valid.md"))
    args = ap.parse_args()
    from cadenza.eval.run import run_eval

    gen = load_for_valid(args.cases, None, args.threads)
    rows, t0, data = {}, time.perf_counter(), {}
    for name, (folder, patch) in CANDIDATES.items():
        undo = patch() if patch else None
        try:  # each candidate's own output folder: the patch is not part of the eval's cache key
            data = run_eval(args.cases, Path(args.work) / folder, model=gen, subsets="three", max_figures=0)
        finally:
            if undo:
                undo()
        rows[name] = {**summary(data), "classifier": classifier_rate(Path(args.work) / folder)}
    base_name = next(iter(rows))
    base = rows[base_name]
    why = {name: "; ".join(failures(s, base, FLOORS)) or "admissible" for name, s in rows.items()}
    ok = {name: s["classifier"] for name, s in rows.items() if name != base_name and why[name] == "admissible"}
    best = max(ok, key=ok.get) if ok else None
    winner = best if best and ok[best] > base["classifier"] + 100 / 24 else base_name
    cfg = data["config"]
    cols = (("classifier", "instrument classifier, all three %"), ("clap_mean", "CLAP"), ("melody_accuracy_mean", "melody %"),
            ("dynamics_r_micro", "dyn r ×100"), ("beat_f1_mean", "beat F1 %"), ("downbeat_f1_mean", "downbeat F1 %"),
            ("bp_melody_f1_mean", "bp melody F1 %"), ("dsp_beat_f1_mean", "DSP beat F1 %"), ("spectral_flatness_mean", "flatness ×1000"), ("fad_I", "FAD (I)"))
    lines = [
        *header("Guidance layouts and the prompt's instrument (valid cases)", gen, cfg, args.cases, time.perf_counter() - t0,
                f", dynamics guidance {cfg.get('dynamics_guidance', 0)}, downbeat cfg {cfg.get('downbeat_cfg', 0)}"),
        "Rows: the all-three-controls row averaged over Tables I–III; the classifier over the 24 created cases. The rule, fixed before the "
        + " ".join(__doc__.split("The rule, fixed before the")[1].split("    python")[0].split()), "",
        "| candidate | " + " | ".join(c[1] for c in cols) + " | admissible |", "|---|" + "---:|" * len(cols) + "---|",
    ]
    for name, s in rows.items():
        cells = [f"{s[k]:.3f}" if k in ("clap_mean", "fad_I") else f"{s[k]:.2f}" if k == "spectral_flatness_mean" else f"{s[k]:.1f}" for k, _ in cols]
        lines.append(f"| {'**' + name + '**' if name == winner else name} | " + " | ".join(cells) + f" | {why[name]} |")
    lines += ["", f"**Kept: {winner}.**", ""]
    Path(args.out).write_text("\n".join(lines))
    Path(args.out).with_suffix(".json").write_text(json.dumps({"rows": rows, "why": why, "winner": winner}, indent=1, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
