"""Render the corpus listening page: ``docs/listening/README.md`` with OGG clips and control plots.

For each chosen clip of the rendered corpus (held-out test split, different collections and
instruments, with and without drums) this writes a small OGG Vorbis file, a PNG of the
clip's score-derived controls over its log-mel (``cadenza.controls.plot.plot_controls``), and
a section with the clip's caption and facts; it also reports how well the shipped beat
tracker recovers that clip's score beats (mir_eval F-measure, ±70 ms).

Run from the repository root: ``python docs/listening/make_page.py [--data data/corpus-small]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from cadenza.audio import MelSpectrogram, load_audio, save_audio  # noqa: E402
from cadenza.controls import ControlSet  # noqa: E402
from cadenza.controls.beat_tracker import load_beat_tracker, shipped_weights_available  # noqa: E402
from cadenza.controls.plot import plot_controls  # noqa: E402
from cadenza.data.manifest import atomic_write_text, read_manifest  # noqa: E402
from cadenza.errors import CadenzaError  # noqa: E402
from cadenza.train.beats import f_measure  # noqa: E402

HERE = Path(__file__).resolve().parent
CLIPS = (
    "beethoven_opus18no1_movement2-v0-c00",
    "nottingham-dataset_reelsa-c-n1-v0-c00",
    "miscFolk_northumbrianminstrelsyopus-n60-v0-c00",
    "josquin_milleRegrets-n2-v0-c00",
    "leadSheet_berlinAlexandersRagtime-v0-c00",
    "schumann_robert_opus41no1_movement2-v0-c00",
)
MAX_OGG_BYTES = 100_000
MAX_PNG_BYTES = 150_000


def quantize_png(path: Path, colors: int = 96) -> Path:
    """Re-save a figure with an adaptive palette: spectrograms compress badly in full RGB."""
    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp.png")
    with Image.open(path) as im:
        im.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(tmp, optimize=True)
    os.replace(tmp, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "corpus-small"))
    parser.add_argument("--seconds", type=float, default=6.0, help="audio kept per clip")
    args = parser.parse_args()
    data = Path(args.data)
    rows = {r["id"]: r for r in read_manifest(data)}
    missing = [c for c in CLIPS if c not in rows]
    if missing:
        raise CadenzaError(f"clips {missing} are not in {data}", "build the small corpus with 'cadenza data build'")
    mel = MelSpectrogram()
    tracker = load_beat_tracker() if shipped_weights_available() else None
    sections = []
    for n, cid in enumerate(CLIPS, start=1):
        r = rows[cid]
        audio = load_audio(data / r["path"])[: int(args.seconds * 22050)]
        controls = ControlSet.load(data / r["controls"]["score"]).fit_length(audio.size // 256 + 1)
        ogg = save_audio(HERE / f"{n:02d}-{r['collection']}.ogg", audio)
        with torch.inference_mode():
            logmel = mel(torch.from_numpy(audio)).numpy()
        name = r.get("title") or r["work"]
        title = f"{name} ({r['collection']}) — {', '.join(r['instruments'])}"
        png = quantize_png(plot_controls(controls, logmel, HERE / f"{n:02d}-{r['collection']}.png", title=title[:110], dpi=80))
        for path, limit in ((ogg, MAX_OGG_BYTES), (png, MAX_PNG_BYTES)):
            if path.stat().st_size > limit:
                raise CadenzaError(f"{path.name} is {path.stat().st_size} bytes (limit {limit})", "shorten the clip or lower the dpi")
        facts = (
            f"{r['meter']}, {r['bpm']:.0f} BPM, {r['key'] or 'key unknown'}; "
            f"{'drums: ' + r['drum_style'] if r['drums'] else 'no drums'}; accompaniment: {r['accompaniment'] or 'parts as written'}; "
            f"dynamics: {r['dynamics_style']}; split: {r['split']}"
        )
        tracked = ""
        if tracker is not None:
            est = tracker.track(audio, 22050)
            ref = controls.beats
            beat = f_measure(ref[:, 0], est[:, 0])
            down = f_measure(ref[ref[:, 1] > 0.5, 0], est[est[:, 1] > 0.5, 0])
            tracked = f"\n\nShipped beat tracker on this clip: beat F1 {beat:.2f}, downbeat F1 {down:.2f} (±70 ms, against the score beats)."
        sections.append(
            f"## {n}. {name} — {r['collection']}\n\n"
            f"*{r['caption']}*\n\n"
            f"{facts}\n\n"
            f'<audio controls src="{ogg.name}"></audio> [{ogg.name}]({ogg.name})\n\n'
            f"![controls of clip {n}]({png.name}){tracked}\n"
        )
    intro = (
        "# Listening page: the rendered corpus\n\n"
        "Six clips of `data/corpus-small` (held-out test split), from different collections, with and without drums, "
        "as the models hear them: 22.05 kHz mono, rendered from scores with a General MIDI SoundFont. Each plot shows "
        "the clip's log-mel and its **score-derived** controls (exact, not extracted from audio): melody (top voice, "
        "pitch class per frame), dynamics (dBFS) and rhythm (beat / downbeat activations; thin lines beats, thick "
        "lines downbeats). The caption is the first of the clip's generated captions. The last line of each section "
        "says how well the shipped beat tracker (`cadenza.controls.beat_tracker`) finds that clip's score beats from "
        "the audio; compound meters without drums, like clip 6, are where it still fails (whole-split numbers: "
        "`benchmarks/results/beats.md`).\n\n"
        "Regenerate with `python docs/listening/make_page.py` (needs the built corpus).\n\n"
    )
    atomic_write_text(HERE / "README.md", intro + "\n".join(sections))
    print(f"wrote {HERE / 'README.md'} and {2 * len(CLIPS)} media files")


if __name__ == "__main__":
    main()
