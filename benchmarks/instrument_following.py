"""Does the instrument named in the prompt reach the output? Two judges on the eval's audio.

For every created case of ``cadenza eval`` reports (prompts "A <mood> <genre> played on
<instrument>.", eight instrument phrases), two judges:

- **CLAP** (zero-shot): the shipped CLAP embeds each output and eight neutral prompts "Music
  played on <instrument>."; the case counts as recognised when the named phrase's prompt is the
  closest. Chance 1/8.
- **classifier**: the shipped instrument-family classifier (``cadenza.eval.instruments``,
  trained on the corpus's General MIDI programs); the prompt names families ("flute and
  strings" → pipes, strings) and the case counts as recognised when the top-scoring family
  among the seven the eight phrases name is one of them. Chance mean |named| / 7 (17.9 %).

Rows: no controls (text only) and all three controls, for each report given (e.g. control
guidance off and on), so one run shows whether the controls or their guidance crowd the prompt
out; plus **real corpus test clips** (``--data``, split ``--split``), each judged against its
own first caption: the judges' ceiling on real renders. There a CLAP pick counts when every
family of the picked phrase is among the caption's ("violin and cello" for a clip of violin,
viola and cello), and only clips for which some phrase qualifies are counted, for both judges.
Wilson 95 % intervals (24 cases: wide).

Writes ``instrument_following.md`` + ``.json`` into ``--out`` (default ``benchmarks/results``).
Reads cached audio only.

    python benchmarks/instrument_following.py runs/eval/report-cc0=runs/eval/cache-cc0 runs/eval/report-cc7=runs/eval/cache-cc7
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np
import soundfile as sf

RESULTS = Path(__file__).parent / "results"
ROWS = ("none", "melody+dynamics+rhythm")
REAL_ROW = "real corpus test clips"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def summary(hits: list[bool], chance: float) -> dict:
    """Counts, rate, Wilson interval and the judge's chance rate for one row."""
    k, n = int(sum(hits)), len(hits)
    lo, hi = wilson(k, n)
    return {"recognised": k, "cases": n, "rate": k / n if n else math.nan, "wilson95": [lo, hi], "chance": chance}


def _pct(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{100 * x:.1f} %"


def _cells(s: dict) -> str:
    lo, hi = s["wilson95"]
    interval = "–" if not np.isfinite(lo) else f"{100 * lo:.1f}–{100 * hi:.1f} %"
    return f"{_pct(s['rate'])} | {interval} | {_pct(s['chance'])}"


class Judges:
    """Both judges with what they share: the eight instrument phrases and the families they name."""

    def __init__(self, clap_folder: str | None, classifier_folder: str | None) -> None:
        from cadenza.eval.cases import _INSTRUMENTS
        from cadenza.eval.clap import load_clap
        from cadenza.eval.instruments import load_instrument_classifier, named_families

        self.clap = load_clap(clap_folder)
        self.classifier = load_instrument_classifier(classifier_folder)
        self.labels = list(_INSTRUMENTS)
        self.label_families = [named_families(label) for label in self.labels]
        self.text = self.clap.embed_text([f"Music played on {i}." for i in self.labels])

    def clap_picks(self, waves: list[np.ndarray], sr: int) -> np.ndarray:
        """Index of the nearest of the eight phrases, per clip."""
        return np.argmax(self.clap.embed_audio(waves, sr) @ self.text.T, axis=1)

    def generated(self, waves: list[np.ndarray], sr: int, prompts: list[str], named: list[str]) -> tuple[dict, dict]:
        """(CLAP, classifier) summaries for generated clips whose prompts name the phrase ``named``."""
        from cadenza.eval.instruments import chance_rate, named_families

        if not waves:
            return summary([], 1 / len(self.labels)), summary([], math.nan)
        picks = self.clap_picks(waves, sr)
        clap_hits = [self.labels[p] == name for p, name in zip(picks, named)]
        verdicts = self.classifier.judge(waves, prompts, sr)
        judged = [v.recognised for v in verdicts if v.recognised is not None]
        return (summary(clap_hits, 1 / len(self.labels)),
                summary(judged, chance_rate([named_families(p) for p in prompts], self.classifier.vocabulary)))

    def real(self, waves: list[np.ndarray], sr: int, captions: list[str]) -> tuple[dict, dict]:
        """(CLAP, classifier) summaries for real clips against their own captions (protocol: module docstring)."""
        from cadenza.eval.instruments import chance_rate, named_families

        named = [named_families(c) for c in captions]
        fits = np.array([[fam <= n for fam in self.label_families] for n in named], bool).reshape(-1, len(self.labels))
        keep = np.flatnonzero(fits.any(axis=1))
        if keep.size == 0:
            return summary([], math.nan), summary([], math.nan)
        waves = [waves[i] for i in keep]
        picks = self.clap_picks(waves, sr)
        clap_hits = [bool(fits[i, p]) for i, p in zip(keep, picks)]
        verdicts = self.classifier.judge(waves, [captions[i] for i in keep], sr)
        return (summary(clap_hits, float(fits[keep].mean())),
                summary([bool(v.recognised) for v in verdicts], chance_rate([named[i] for i in keep], self.classifier.vocabulary)))


def real_clips(data: Path, split: str) -> tuple[list[np.ndarray], int, list[str]]:
    """Audio and first captions of one split of a rendered corpus (clips without programs are skipped)."""
    from cadenza.audio.format import SAMPLE_RATE
    from cadenza.audio.io import load_audio
    from cadenza.data.manifest import read_manifest

    rows = [r for r in read_manifest(data, split) if r.get("programs")]
    return [load_audio(data / r["path"]) for r in rows], SAMPLE_RATE, [r["captions"][0] if r.get("captions") else r["caption"] for r in rows]


def report_rows(data: dict) -> list[str]:
    """Every control-subset row of a report's created cases, in the report's order (text only first)."""
    seen: dict[str, None] = {}
    for case in data["cases"]:
        if case["case"]["kind"] == "created":
            seen.update(dict.fromkeys(case["rows"]))
    return list(seen)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="*", help="cadenza eval report folders, each REPORT or REPORT=CACHE when its audio cache is elsewhere (--cache); none: only the real-clip row")
    ap.add_argument("--clap", default=None, help="CLAP model folder (default: the shipped one)")
    ap.add_argument("--classifier", default=None, help="instrument classifier folder (default: the shipped one)")
    ap.add_argument("--data", default="data/corpus-small", help="rendered corpus for the real-clip row (skipped when absent)")
    ap.add_argument("--split", default="test", help="its split for the real-clip row")
    ap.add_argument("--rows", default=",".join(ROWS),
                    help="comma-separated control subsets to judge (e.g. melody,rhythm), or 'all' for every row a report has: which control crowds the prompt out")
    ap.add_argument("--out", default=str(RESULTS), help="folder for instrument_following.md / .json")
    args = ap.parse_args(argv)

    from cadenza.fsutil import atomic_write_text

    judges = Judges(args.clap, args.classifier)
    clf = judges.classifier
    vocab = ", ".join(clf.vocabulary)
    result = {
        "judges": {"clap": judges.clap.name, "classifier": clf.name, "classifier_head": clf.head, "classifier_vocabulary": vocab},
        "instruments": judges.labels, "reports": {},
    }
    lines = [
        "# Instrument named in the prompt, recognised in the output (CLAP and the instrument classifier)", "",
        f"Judges: the shipped CLAP (`{judges.clap.name}`), nearest of {len(judges.labels)} prompts \"Music played on <instrument>.\" "
        f"(chance {100 / len(judges.labels):.1f} %); the instrument classifier (`{clf.name}`, {clf.head} head), top family among "
        f"{vocab} is one the prompt names (chance mean |named| / {len(clf.vocabulary)}). Created cases of each report; Wilson 95 % intervals. "
        f"The last row judges real corpus clips against their own captions: each judge's ceiling.", "",
        "| report | control cfg | row | CLAP | 95 % interval | chance | classifier | 95 % interval | chance | cases |",
        "|---|---|---|---:|---|---:|---:|---|---:|---:|",
    ]
    for spec in args.reports:
        folder, _, cache_dir = spec.partition("=")
        folder = Path(folder)
        cache = Path(cache_dir) if cache_dir else folder / "cache"
        data = json.loads((folder / "results.json").read_text())
        entry = {}
        rows = report_rows(data) if args.rows == "all" else [r.strip() for r in args.rows.split(",") if r.strip()]
        for row in rows:
            waves, prompts, named, sr = [], [], [], None
            for case in data["cases"]:
                m = re.search(r"played on (.+)\.$", case["case"]["prompt"])
                if case["case"]["kind"] != "created" or m is None or row not in case["rows"]:
                    continue
                wave, sr_i = sf.read(cache / case["rows"][row]["audio"], dtype="float32")
                if sr is not None and sr_i != sr:
                    raise SystemExit(f"{folder}: cached clips at {sr} and {sr_i} Hz")
                sr = sr_i
                waves.append(wave if wave.ndim == 1 else wave.mean(axis=1))
                prompts.append(case["case"]["prompt"])
                named.append(m.group(1))
            clap_s, clf_s = judges.generated(waves, sr or 22050, prompts, named)
            entry[row] = {"clap": clap_s, "classifier": clf_s}
            lines.append(f"| {folder.name} | {data['config'].get('control_cfg', 0)} | {row} | {_cells(clap_s)} | {_cells(clf_s)} | {len(waves)} |")
        result["reports"][str(folder)] = entry
    data_dir = Path(args.data)
    if (data_dir / "manifest.jsonl").is_file():
        waves, sr, captions = real_clips(data_dir, args.split)
        clap_s, clf_s = judges.real(waves, sr, captions)
        result["real"] = {"data": str(data_dir), "split": args.split, "clap": clap_s, "classifier": clf_s}
        lines.append(f"| {data_dir.name} ({args.split}) | – | {REAL_ROW} | {_cells(clap_s)} | {_cells(clf_s)} | {clf_s['cases']} |")
    else:
        lines += ["", f"(no real-clip row: {data_dir / 'manifest.jsonl'} not found)"]
    lines += ["", "Issue #17's goal: the prompt's instrument recognised in ≥ 70 % of clips that name one.", ""]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "instrument_following.md", "\n".join(lines))
    atomic_write_text(out / "instrument_following.json", json.dumps(result, indent=1))
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
