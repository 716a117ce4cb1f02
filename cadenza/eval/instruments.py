"""Which instruments does a clip hold, and does it hold the one its prompt names?

Issue #17 asks that the instrument a prompt names be recognised in at least 70 % of the clips
that name one, checked by two judges: Cadenza's zero-shot CLAP (``cadenza.eval.clap``) and an
instrument classifier trained on the corpus's known General MIDI programs. This module is the
second judge: a taxonomy of instrument families, a parser from prompt text to the families it
names, a small CNN over the canonical log-mel and the judging protocol.

**Taxonomy** (``FAMILIES``). A prompt names instruments in words ("violin and cello", "brass
ensemble"), the corpus knows them as GM programs; a *family* is the level at which a listener
(and a prompt) tells them apart. Every one of the 128 GM programs belongs to at most one
family (drums, sound effects, synth effects and unpitched percussion to none); the families
follow the GM groups except where the corpus's renders or prompt words disagree with them:

- ``harpsichord`` is not ``piano`` (GM puts it there, but it is plucked: a prompt saying
  "piano" is not followed by a harpsichord, and the corpus has a harpsichord ensemble);
- ``free reed`` (accordion, harmonica) is not ``organ`` (GM's group): neither word means the other;
- ``harp`` is its own family, neither bowed ``strings`` (GM's orchestral group) nor ``guitar``;
- ``strings`` are the bowed strings, solo or section, contrabass included (it plays the bass
  line in the corpus's string ensembles, but a prompt's "strings" covers it); ``bass`` is the
  bass guitars and synth bass;
- the kalimba (GM "ethnic") joins the mallets (``chromatic percussion``), the banjo ``guitar``;
- the choir pad (GM 91) is a ``synth pad``, the choir and voice "oohs" are ``voice``.

Programs outside the corpus's palette (``cadenza.data.arrange.INSTRUMENT_NAMES``) are placed
by the same rules but the classifier never heard them.

**Prompt parsing** (``named_families``): the longest known phrase at each position wins
("choir pad" before "choir", "bass clarinet" before "bass"), plurals count, and the corpus's
genre labels that contain an instrument word ("piano piece", "keyboard piece", "fiddle tune")
name none: in "a piano piece by Clara Schumann played on harp" only the harp is an instrument.

**Classifier** (``InstrumentNet``): CLAP's audio tower (``ClapAudioEncoder``: strided stem,
residual conv stages, attention pooling over time) with two heads over the families: a sigmoid
*presence* head ("family heard in the mix", targets from the manifest's ``programs``) and a
softmax *lead* head ("family of the melody", ``programs[0]``). Trained by
``cadenza.train.instruments``; the shipped model is ``cadenza/weights/instruments``.

**Judging protocol** (``InstrumentClassifier.judge``, ``judge_scores``): a clip's prompt names
a set of families; the candidates are a fixed *vocabulary* of families (default
``DEFAULT_VOCABULARY``: the union of those named by the eight instrument phrases of
``cadenza.eval.cases``); the clip is **recognised** when the classifier's top-scoring
candidate is one of the named families. A prompt that names no candidate is not judged
(``recognised`` is None). A judge guessing uniformly among the candidates scores
``mean(|named ∩ vocabulary|) / |vocabulary|`` (``chance_rate``): 1.25 / 7 = 17.9 % on the
eval's prompts. Which head scores is the model folder's ``judge.head``, chosen at export by
the higher recognised rate on the valid split's real renders judged against their own
captions (``cadenza.train.instruments``); the same rate on the test split is the judge's
ceiling, recorded in ``config.json`` next to it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cadenza.audio.format import SAMPLE_RATE
from cadenza.audio.io import check_waveform, resample
from cadenza.audio.mel import MelConfig, MelSpectrogram, normalize_log_mel
from cadenza.checkpoint import CONFIG_NAME, WEIGHTS_NAME, save_model_folder
from cadenza.errors import CadenzaError
from cadenza.eval.clap import ClapAudioEncoder
from cadenza.registry import get_family, load_model, register_family

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights" / "instruments"
MODEL_KIND = "instruments"
MODEL_TYPE = "instrument-cnn"
HEADS = ("presence", "lead")


# ---------------------------------------------------------------------------------------------- taxonomy
@dataclass(frozen=True)
class InstrumentFamily:
    """One family: its GM programs (0-based) and the prompt words that name it besides the programs' names."""

    name: str
    programs: tuple[int, ...]
    words: tuple[str, ...] = ()


FAMILIES: tuple[InstrumentFamily, ...] = (
    InstrumentFamily("piano", (0, 1, 2, 3, 4, 5, 7), (
        "piano", "grand piano", "upright piano", "pianoforte", "fortepiano", "electric piano", "e piano", "rhodes", "clavinet",
    )),
    InstrumentFamily("harpsichord", (6,), ("harpsichord", "cembalo", "clavecin", "clavichord", "virginal")),
    InstrumentFamily("chromatic percussion", (8, 9, 10, 11, 12, 13, 14, 15, 108, 112, 114), (
        "chromatic percussion", "mallet", "mallets", "celesta", "glockenspiel", "music box", "vibraphone", "vibes", "marimba",
        "xylophone", "tubular bells", "dulcimer", "kalimba", "mbira", "steel drum",
    )),
    InstrumentFamily("organ", (16, 17, 18, 19, 20), ("organ", "church organ", "pipe organ", "hammond organ", "electric organ", "rock organ", "reed organ")),
    InstrumentFamily("free reed", (21, 22, 23), ("accordion", "harmonica", "mouth organ", "concertina", "bandoneon", "melodica")),
    InstrumentFamily("guitar", (24, 25, 26, 27, 28, 29, 30, 31, 104, 105, 106), (
        "guitar", "acoustic guitar", "classical guitar", "nylon guitar", "steel guitar", "electric guitar", "jazz guitar",
        "banjo", "mandolin", "ukulele", "lute", "sitar", "shamisen",
    )),
    InstrumentFamily("bass", (32, 33, 34, 35, 36, 37, 38, 39), (
        "bass", "bass guitar", "acoustic bass", "upright bass", "electric bass", "fretless bass", "synth bass", "bass line", "bassline",
    )),
    InstrumentFamily("strings", (40, 41, 42, 43, 44, 45, 48, 49, 50, 51, 110), (
        "strings", "string", "string quartet", "string trio", "string orchestra", "string section", "string ensemble",
        "bowed strings", "violin", "viola", "cello", "violoncello", "contrabass", "double bass", "fiddle",
    )),
    InstrumentFamily("harp", (46, 107), ("harp", "lyre", "koto")),
    InstrumentFamily("voice", (52, 53, 54), ("choir", "voice", "vocal", "vocals", "singer", "singing", "a cappella", "soprano", "voice pad")),
    InstrumentFamily("brass", (56, 57, 58, 59, 60, 61, 62, 63), (
        "brass", "brass ensemble", "brass section", "brass band", "trumpet", "cornet", "flugelhorn", "trombone", "tuba",
        "euphonium", "horn", "french horn",
    )),
    InstrumentFamily("reeds", (64, 65, 66, 67, 68, 69, 70, 71, 109, 111), (
        "reeds", "reed", "saxophone", "sax", "soprano sax", "alto sax", "tenor sax", "baritone sax", "oboe", "english horn",
        "cor anglais", "bassoon", "contrabassoon", "clarinet", "bass clarinet", "bagpipe", "bagpipes",
    )),
    InstrumentFamily("pipes", (72, 73, 74, 75, 76, 77, 78, 79), (
        "flute", "piccolo", "recorder", "pan flute", "pan pipes", "panpipes", "tin whistle", "whistle", "fife", "ocarina", "shakuhachi",
    )),
    InstrumentFamily("synth lead", tuple(range(80, 88)), ("synth lead", "lead synth", "square lead", "saw lead", "sawtooth lead")),
    InstrumentFamily("synth pad", tuple(range(88, 96)), ("synth pad", "pad", "pads", "polysynth", "warm pad", "halo pad", "choir pad")),
)
FAMILY_NAMES: tuple[str, ...] = tuple(f.name for f in FAMILIES)
PROGRAM_FAMILY: dict[int, str] = {p: f.name for f in FAMILIES for p in f.programs}

# Words that name several families at once, and phrases that contain an instrument word but name
# none: the corpus's genre labels (cadenza.data.captions.COLLECTIONS) and drum words.
MULTI_WORDS: dict[str, tuple[str, ...]] = {
    "woodwind": ("reeds", "pipes"), "woodwinds": ("reeds", "pipes"), "wind ensemble": ("reeds", "pipes"),
    "synth": ("synth lead", "synth pad"), "synths": ("synth lead", "synth pad"), "synthesizer": ("synth lead", "synth pad"),
}
NOT_INSTRUMENTS: tuple[str, ...] = (
    "piano piece", "keyboard piece", "fiddle tune", "quartet movement", "trio sonata", "bass drum", "drum kit", "drums",
)

# The families named by the eight instrument phrases of the eval's created cases
# (cadenza.eval.cases._INSTRUMENTS; a test keeps the two in step: this module sits below cases.py).
DEFAULT_VOCABULARY: tuple[str, ...] = ("piano", "organ", "guitar", "strings", "brass", "reeds", "pipes")


def family_of_program(program: int) -> str | None:
    """The family of a GM program (0–127), None for the ones no family takes (drums, effects)."""
    return PROGRAM_FAMILY.get(int(program))


def _phrase_table() -> dict[str, tuple[str, ...]]:
    from cadenza.data.arrange import INSTRUMENT_NAMES

    table: dict[str, tuple[str, ...]] = {}
    for fam in FAMILIES:
        for word in (fam.name, *fam.words):  # a family's own name names it ("free reed", "pipes")
            table[word] = (fam.name,)
    for program, name in INSTRUMENT_NAMES.items():  # every name a corpus caption can hold
        table.setdefault(name, (PROGRAM_FAMILY[program],))
    table.update(MULTI_WORDS)
    for phrase in NOT_INSTRUMENTS:
        table[phrase] = ()
    return table


@lru_cache(maxsize=1)
def _parser() -> tuple[re.Pattern[str], dict[str, tuple[str, ...]]]:
    table = _phrase_table()
    # longest first: at any position the regex takes the first alternative that matches
    alternatives = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in sorted(table, key=len, reverse=True))
    return re.compile(rf"\b(?:{alternatives})(?:e?s)?\b", re.IGNORECASE), table


def named_families(text: str) -> frozenset[str]:
    """The families a prompt or caption names ("flute and strings" → {pipes, strings})."""
    pattern, table = _parser()
    out: set[str] = set()
    for m in pattern.finditer(text.replace("-", " ")):
        words = re.sub(r"\s+", " ", m.group(0).lower())
        for key in (words, words[:-1], words[:-2]):  # as written, else without the plural's "s" / "es"
            if key in table:
                out.update(table[key])
                break
    return frozenset(out)


def program_targets(programs: Sequence[Sequence[int]], families: Sequence[str] = FAMILY_NAMES) -> tuple[np.ndarray, np.ndarray]:
    """(presence (N, F) 0/1, lead (N,) family index or -1) from each clip's GM programs (melody first).

    Drums are not in the manifest's ``programs``; a program no family takes is skipped, and a
    clip whose first program has no family has no lead target (-1).
    """
    index = {name: i for i, name in enumerate(families)}
    presence = np.zeros((len(programs), len(families)), np.float32)
    lead = np.full(len(programs), -1, np.int64)
    for i, progs in enumerate(programs):
        cols = [index.get(family_of_program(p) or "", -1) for p in progs]
        hits = [c for c in cols if c >= 0]
        presence[i, hits] = 1.0
        if cols and cols[0] >= 0:
            lead[i] = cols[0]
    return presence, lead


# ---------------------------------------------------------------------------------------------- judging
def _mask(sets: Sequence[Iterable[str]], families: Sequence[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(families)}
    out = np.zeros((len(sets), len(families)), bool)
    for i, names in enumerate(sets):
        out[i, [index[n] for n in names if n in index]] = True
    return out


def judge_scores(
    scores: np.ndarray, named: Sequence[Iterable[str]], families: Sequence[str] = FAMILY_NAMES, vocabulary: Sequence[str] | None = None
) -> tuple[list[str | None], list[bool | None]]:
    """(top candidate, recognised) per clip from its (F,) family scores and the families its prompt names.

    The protocol of the module docstring: the top-scoring family among ``vocabulary`` (default
    ``DEFAULT_VOCABULARY``) is the judge's answer; recognised = it is one of the named
    families; None for a prompt that names no candidate (not judged).
    """
    scores = np.asarray(scores, np.float64)
    vocabulary = DEFAULT_VOCABULARY if vocabulary is None else tuple(vocabulary)
    unknown = [v for v in vocabulary if v not in families]
    if unknown or not vocabulary:
        raise CadenzaError(f"vocabulary families {unknown or '(none)'} are not among the classifier's", f"choose from: {', '.join(families)}")
    if scores.shape != (len(named), len(families)):
        raise CadenzaError(f"scores of shape {scores.shape} for {len(named)} prompts and {len(families)} families", "pass one score row per prompt")
    candidate = _mask([vocabulary], families)[0]
    names = _mask(named, families)
    top = np.argmax(np.where(candidate[None, :], scores, -np.inf), axis=1)
    judged = (names & candidate[None, :]).any(axis=1)
    hit = names[np.arange(len(named)), top]
    return [families[t] for t in top], [bool(h) if j else None for h, j in zip(hit, judged)]


def chance_rate(named: Sequence[Iterable[str]], vocabulary: Sequence[str] | None = None) -> float:
    """A uniform guess among the candidates: mean |named ∩ vocabulary| / |vocabulary| over judged prompts."""
    vocabulary = set(DEFAULT_VOCABULARY if vocabulary is None else vocabulary)
    sizes = np.array([len(set(n) & vocabulary) for n in named], np.float64)
    sizes = sizes[sizes > 0]
    return float(sizes.mean() / len(vocabulary)) if sizes.size else float("nan")


def average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-column average precision (NaN where a column has no positive), ties broken by order."""
    scores, targets = np.asarray(scores, np.float64), np.asarray(targets) > 0.5
    order = np.argsort(-scores, axis=0, kind="stable")
    hits = np.take_along_axis(targets, order, axis=0).astype(np.float64)
    precision = np.cumsum(hits, axis=0) / np.arange(1, len(scores) + 1)[:, None]
    n_pos = hits.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pos > 0, (precision * hits).sum(axis=0) / n_pos, np.nan)


def classification_metrics(
    presence: np.ndarray, lead: np.ndarray, presence_target: np.ndarray, lead_target: np.ndarray,
    captions: Sequence[str] | None = None, families: Sequence[str] = FAMILY_NAMES, vocabulary: Sequence[str] | None = None,
) -> dict[str, float]:
    """Held-out numbers of a classifier: lead-family accuracy, presence mAP / micro-F1 at 0.5 and,
    given the clips' captions, the judge's recognised rate with either head and its chance rate.

    ``presence``/``lead`` are probabilities (N, F); ``presence_target`` 0/1 (N, F); ``lead_target``
    a family index per clip (-1: none). mAP averages the families with a positive clip.
    """
    presence, lead = np.asarray(presence, np.float64), np.asarray(lead, np.float64)
    presence_target, lead_target = np.asarray(presence_target) > 0.5, np.asarray(lead_target)
    has_lead = lead_target >= 0
    pred = presence >= 0.5
    tp = float((pred & presence_target).sum())
    f1 = 2 * tp / max(float(pred.sum() + presence_target.sum()), 1.0)
    ap = average_precision(presence, presence_target)
    out = {
        "n_clips": float(len(presence)),
        "lead_acc": float((lead.argmax(axis=1) == lead_target)[has_lead].mean()) if has_lead.any() else float("nan"),
        "presence_map": float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan"),
        "presence_f1": f1,
    }
    if captions is not None:
        named = [named_families(c) for c in captions]
        for head, scores in (("presence", presence), ("lead", lead)):
            _, rec = judge_scores(scores, named, families, vocabulary)
            judged = [r for r in rec if r is not None]
            out[f"recognised_{head}"] = float(np.mean(judged)) if judged else float("nan")
        out["judged_clips"] = float(len(judged))
        out["recognised_chance"] = chance_rate(named, vocabulary)
    return out


@dataclass
class Judgement:
    """One clip judged: the families its prompt names, the classifier's scores, the verdict."""

    prompt: str
    named: tuple[str, ...]
    scores: dict[str, float]  # the deciding head's probability per family
    presence: dict[str, float]  # P(family heard in the mix)
    lead: dict[str, float]  # P(family plays the melody)
    top: str  # the top-scoring candidate
    recognised: bool | None  # None: the prompt names no candidate family
    head: str = "presence"
    vocabulary: tuple[str, ...] = field(default=DEFAULT_VOCABULARY)

    def to_dict(self) -> dict:
        return {
            "prompt": self.prompt, "named": list(self.named), "top": self.top, "recognised": self.recognised, "head": self.head,
            "vocabulary": list(self.vocabulary), "scores": self.scores, "presence": self.presence, "lead": self.lead,
        }


# ---------------------------------------------------------------------------------------------- the network
def default_model_config() -> dict:
    """The ``model`` section of an instrument classifier config (``cadenza/configs/instruments/small.json``)."""
    return {
        "n_mels": 128, "stem_channels": 16, "stem_stride": [4, 2], "channels": [32, 64, 96, 128], "hidden": 128, "dropout": 0.1,
        "families": list(FAMILY_NAMES),
    }


class InstrumentNet(nn.Module):
    """Raw log-mel (B, n_mels, T) → (presence logits, lead logits), each (B, F)."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        cfg = {**default_model_config(), **config}
        if not cfg["families"] or len(set(cfg["families"])) != len(cfg["families"]):
            raise CadenzaError(f"model.families must be distinct names, got {cfg['families']}", "list each family once")
        self.config = cfg
        self.audio = ClapAudioEncoder(cfg["n_mels"], cfg["stem_channels"], cfg["channels"], cfg["hidden"], cfg["dropout"], cfg["stem_stride"])
        self.presence = nn.Linear(cfg["hidden"], len(cfg["families"]))
        self.lead = nn.Linear(cfg["hidden"], len(cfg["families"]))

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(self.config["families"])

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.gelu(self.audio(normalize_log_mel(mel)))
        return self.presence(h), self.lead(h)


def _is_instruments_config(config: dict) -> bool:
    model = config.get("model")
    return isinstance(model, dict) and "families" in model and "hidden" in model


@register_family(
    kind=MODEL_KIND, type=MODEL_TYPE, title="CNN instrument classifier", shipped=WEIGHTS_DIR, recognise=_is_instruments_config,
    wrap=lambda net, config, folder: InstrumentClassifier(net, config), task="instruments", task_module="cadenza.train.instruments",
    about="instrument-family classifier (CLAP's CNN audio tower, presence + lead heads): the second instrument judge",
)
def build_instrument_net(config: dict) -> InstrumentNet:
    """A fresh instrument classifier network from a config (its ``model`` section)."""
    return InstrumentNet(config["model"])


class InstrumentClassifier:
    """A loaded classifier with its mel front end: predicts family probabilities and judges prompts."""

    def __init__(self, net: InstrumentNet, config: dict | None = None) -> None:
        self.net = net.eval()
        self.config = dict(config or {"model": net.config})
        self.name = str(self.config.get("name", "instruments"))
        self.families = net.families
        self.mel = MelSpectrogram(MelConfig(n_mels=net.config["n_mels"]))
        judge = self.config.get("judge") or {}
        self.head = str(judge.get("head", "presence"))
        self.vocabulary = tuple(judge.get("vocabulary") or DEFAULT_VOCABULARY)
        unknown = [v for v in self.vocabulary if v not in self.families]
        if unknown:
            raise CadenzaError(f"judge.vocabulary names families the classifier lacks: {', '.join(unknown)}", "fix config.json")
        if self.head not in HEADS:
            raise CadenzaError(f"judge.head '{self.head}' is not one of {', '.join(HEADS)}", "fix config.json")

    @classmethod
    def load(cls, folder: str | os.PathLike | None = None) -> "InstrumentClassifier":
        """From a model folder (default: the shipped ``cadenza/weights/instruments``)."""
        folder = Path(folder) if folder is not None else WEIGHTS_DIR
        if folder == WEIGHTS_DIR and not shipped_weights_available():
            raise CadenzaError(
                "no instrument classifier ships with this copy of Cadenza",
                "train one: cadenza train instruments small --out runs/instruments, then pass runs/instruments/best",
            )
        return load_model(folder, kind=MODEL_KIND).model

    def save(self, folder: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write the model folder (weights + config) atomically."""
        config = get_family(MODEL_KIND, MODEL_TYPE).stamp({**self.config, "model": self.net.config, **(extra or {})})
        return save_model_folder(folder, self.net.state_dict(), config)

    def mels(self, waveforms: Sequence[np.ndarray] | np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[torch.Tensor]:
        """Canonical log-mels of mono clips (resampled to 22.05 kHz first)."""
        if isinstance(waveforms, np.ndarray) and waveforms.ndim == 1:
            waveforms = [waveforms]
        out = []
        with torch.inference_mode():
            for i, w in enumerate(waveforms):
                w = check_waveform(w, f"audio[{i}]")
                if w.ndim != 1:
                    raise CadenzaError(f"audio[{i}] has shape {w.shape}; the classifier takes mono clips", "mix down with cadenza.audio.to_mono")
                out.append(self.mel(torch.from_numpy(resample(w, int(sample_rate), SAMPLE_RATE))))
        if not out:
            raise CadenzaError("no audio clips to classify", "pass at least one waveform")
        return out

    @torch.inference_mode()
    def predict_mels(self, mels: Sequence[torch.Tensor], batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """(presence probabilities, lead probabilities), each (N, F), from canonical log-mels.

        Only clips of equal length share a batch, so a clip's scores never depend on its batch
        (padding would reach the convolutions' edges and the attention pooling).
        """
        lengths = np.array([m.shape[-1] for m in mels])
        presence = np.zeros((len(mels), len(self.families)), np.float32)
        lead = np.zeros_like(presence)
        for length in np.unique(lengths):
            same = np.flatnonzero(lengths == length)
            for k in range(0, same.size, batch_size):
                idx = same[k : k + batch_size]
                p, q = self.net(torch.stack([mels[i].float() for i in idx]))
                presence[idx], lead[idx] = torch.sigmoid(p).numpy(), torch.softmax(q, dim=-1).numpy()
        return presence, lead

    def predict(self, waveforms: Sequence[np.ndarray] | np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
        """(presence, lead) probabilities (N, F) for mono clips of any length."""
        return self.predict_mels(self.mels(waveforms, sample_rate))

    def judge(
        self, audio: Sequence[np.ndarray] | np.ndarray, prompts: Sequence[str] | str, sample_rate: int = SAMPLE_RATE,
        vocabulary: Sequence[str] | None = None, head: str | None = None,
    ) -> list[Judgement]:
        """Judge each clip against its prompt (protocol: module docstring).

        Defaults: ``head`` and ``vocabulary`` from the folder's ``judge`` section (the vocabulary
        falls back to ``DEFAULT_VOCABULARY``).
        """
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        mels = self.mels(audio, sample_rate)
        if len(mels) != len(prompts):
            raise CadenzaError(f"{len(mels)} clips but {len(prompts)} prompts", "pass one prompt per clip")
        head = head or self.head
        if head not in HEADS:
            raise CadenzaError(f"unknown judge head '{head}'", f"choose one of {', '.join(HEADS)}")
        vocabulary = tuple(self.vocabulary if vocabulary is None else vocabulary)
        presence, lead = self.predict_mels(mels)
        scores = presence if head == "presence" else lead
        named = [named_families(p) for p in prompts]
        top, rec = judge_scores(scores, named, self.families, vocabulary)
        fams = self.families

        def as_dict(row: np.ndarray) -> dict[str, float]:
            return {f: float(v) for f, v in zip(fams, row)}

        return [
            Judgement(prompts[i], tuple(n for n in fams if n in named[i]), as_dict(scores[i]), as_dict(presence[i]), as_dict(lead[i]),
                      str(top[i]), rec[i], head, vocabulary)
            for i in range(len(prompts))
        ]


def shipped_weights_available() -> bool:
    """True when ``cadenza/weights/instruments`` holds a complete model folder."""
    return (WEIGHTS_DIR / WEIGHTS_NAME).is_file() and (WEIGHTS_DIR / CONFIG_NAME).is_file()


@lru_cache(maxsize=4)
def _load_cached(folder: str) -> InstrumentClassifier:
    return InstrumentClassifier.load(folder if folder else None)


def load_instrument_classifier(folder: str | os.PathLike | None = None) -> InstrumentClassifier:
    """An instrument classifier (cached per folder); the shipped one when ``folder`` is None."""
    return _load_cached(str(folder) if folder is not None else "")


def judge_instruments(
    audio: Sequence[np.ndarray] | np.ndarray, prompts: Sequence[str] | str, sample_rate: int = SAMPLE_RATE,
    vocabulary: Sequence[str] | None = None, head: str | None = None, model: str | os.PathLike | None = None,
) -> list[Judgement]:
    """Judge clips against their prompts with the shipped (or given) classifier: see the module docstring."""
    return load_instrument_classifier(model).judge(audio, prompts, sample_rate, vocabulary, head)
