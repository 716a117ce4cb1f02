"""The trained beat/downbeat tracker (the default rhythm extractor) and its post-filter.

Music ControlNet read its rhythm control with an RNN beat tracker in the manner of madmom.
Cadenza's is a small temporal convolutional network (Böck & Davies 2020, "TCN beat tracker"),
trained on the exact score beats of the rendered corpus (``cadenza.train.beats``):

1. features: the canonical 128-band log-mel (``cadenza.audio.MelSpectrogram``), scaled to
   about [0, 1], stacked with its half-wave rectified first difference (spectral flux, the
   onset cue madmom feeds its networks);
2. network: a 1x1 projection, then residual blocks of non-causal dilated 1-D convolutions
   (dilations 1..2^k frames, so one output frame sees several bars either side: the context a
   downbeat needs), then a 1x1 head with two sigmoid outputs per frame: beat and downbeat.
   With ``stride: 2`` the blocks run at half the frame rate (twice the channels for about the
   same cost) and a full-rate skip path keeps onsets frame-exact;
3. post-filter: the beat period from the best Pearson match between the beat activation and
   a periodic pulse train (a clean activation matches its own period far better than half or
   double of it; a weak log-normal tempo prior around the corpus's 88 BPM breaks near-ties),
   then Ellis' dynamic program on the activation to place each beat, allowing tempo drift;
   finally the bar length (1-4 beats) and bar phase with the highest likelihood under the
   downbeat activation read at the beats.

``NeuralBeatTracker`` implements the ``RhythmTracker`` contract of ``cadenza.controls.rhythm``;
its shipped weights live in ``cadenza/weights/beats`` (``model.safetensors`` + ``config.json``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cadenza.audio.format import FRAME_RATE, SAMPLE_RATE
from cadenza.audio.io import check_waveform, resample
from cadenza.audio.mel import LOG_MEL_MAX, LOG_MEL_MIN, MelConfig, MelSpectrogram
from cadenza.checkpoint import CONFIG_NAME, WEIGHTS_NAME, save_model_folder
from cadenza.errors import CadenzaError
from cadenza.registry import get_family, load_model, register_family

MODEL_KIND = "beats"  # config.json "kind" (cadenza.registry); folders written before it say LEGACY_KIND
MODEL_TYPE = "beat-tcn"
LEGACY_KIND = "cadenza-beat-tcn"
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights" / "beats"

DEFAULT_MODEL: dict = {
    "n_mels": 128,
    "channels": 32,
    "kernel": 5,
    "dilations": [1, 2, 4, 8, 16, 32, 64, 128],
    "dropout": 0.1,
    "flux_scale": 0.5,
    "stride": 1,
}

DEFAULT_POSTFILTER: dict = {
    "min_bpm": 40.0,
    "max_bpm": 220.0,
    "tempo_step": 0.01,  # relative spacing of the candidate periods (1 %)
    "pulse_width": 1.5,  # frames: standard deviation of each pulse in the template train
    "tempo_prior_bpm": 88.0,  # geometric mean tempo of the training corpus
    "tempo_prior_octaves": 0.5,  # its spread (standard deviation, octaves)
    "tempo_prior_weight": 0.05,  # correlation given up per half squared standard deviation off the prior
    "tightness": 100.0,  # DP penalty on deviating from the period (as librosa / the DSP tracker)
    "min_activation": 0.25,  # no beats at all when the beat activation never reaches this
    "edge_fraction": 0.2,  # drop beats at the ends whose activation is under this x the median
    "silence_db": 60.0,  # frames this far below the loudest are silent (no beats in leading / trailing silence)
    "tail_silence_s": 0.1,  # a clip "ends in silence" when at least this much silence closes it
    "release_s": 0.05,  # ... and then a beat needs this much sound after it
    "downbeat_clip": 0.1,  # downbeat activations are read within [clip, 1 - clip]
    "meters": [4, 3, 2, 1],  # candidate beats per bar, preferred in this order on ties
    "meter_log_prior": [0.0, -0.5, -0.5, -3.0],  # a small preference for common bar lengths (1-beat bars are rare; -3 chosen on valid)
}


# ---------------------------------------------------------------------------------------------- model
class _Block(nn.Module):
    """Dilated conv → ELU → dropout → 1x1 conv, added back to the input (a TCN residual block)."""

    def __init__(self, channels: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.act = nn.ELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mix(self.drop(self.act(self.conv(x))))


class BeatTCN(nn.Module):
    """Log-mel (B, n_mels, T) → beat and downbeat logits (B, 2, T)."""

    def __init__(self, config: dict | None = None) -> None:
        super().__init__()
        self.config = {**DEFAULT_MODEL, **(config or {})}
        c = self.config
        if c["kernel"] % 2 == 0:
            raise CadenzaError(f"beat TCN kernel must be odd (got {c['kernel']})", "use 3 or 5 so frames stay centred")
        if int(c.get("stride", 1)) not in (1, 2):
            raise CadenzaError(f"beat TCN stride must be 1 or 2 (got {c['stride']})")
        ch = int(c["channels"])
        self.inp = nn.Conv1d(2 * int(c["n_mels"]), ch, 1)
        self.stride = int(c.get("stride", 1))
        if self.stride == 2:
            # the blocks run at half the frame rate (half the cost, so more channels for the same
            # time); a full-rate skip from the input projection restores frame-exact onsets after
            self.down = nn.Conv1d(ch, ch, 4, stride=2, padding=1)
            self.refine = nn.Conv1d(ch, ch, 3, padding=1)
        self.blocks = nn.ModuleList(_Block(ch, int(c["kernel"]), int(d), float(c["dropout"])) for d in c["dilations"])
        self.act = nn.ELU()
        self.head = nn.Conv1d(ch, 2, 1)
        # start the outputs near the base rate of beats (about 1 frame in 20) so early steps are calm
        nn.init.constant_(self.head.bias, -3.0)

    def features(self, logmel: Tensor) -> Tensor:
        """Scaled log-mel stacked with its positive first difference (frame 0's difference is 0)."""
        scaled = (logmel - LOG_MEL_MIN) / (LOG_MEL_MAX - LOG_MEL_MIN)
        flux = torch.relu(torch.diff(logmel, dim=-1, prepend=logmel[..., :1]))
        return torch.cat([scaled, self.config["flux_scale"] * flux], dim=1)

    def forward(self, logmel: Tensor) -> Tensor:
        if logmel.dim() != 3 or logmel.shape[1] != self.config["n_mels"]:
            raise CadenzaError(
                f"beat tracker expects a log-mel of shape (batch, {self.config['n_mels']}, frames), got {tuple(logmel.shape)}",
                "compute it with cadenza.audio.MelSpectrogram",
            )
        x = self.inp(self.features(logmel.float()))
        if self.stride == 1:
            for block in self.blocks:
                x = block(x)
            return self.head(self.act(x))
        skip, n = x, x.shape[-1]
        x = self.down(self.act(F.pad(x, (0, n % 2), mode="replicate")))
        for block in self.blocks:
            x = block(x)
        x = F.interpolate(x, size=n, mode="linear", align_corners=False) + skip
        return self.head(self.act(self.refine(self.act(x))))

    def receptive_field(self) -> int:
        """Frames one output frame sees (for the docs and the tests)."""
        blocks = sum((int(self.config["kernel"]) - 1) * int(d) for d in self.config["dilations"])
        return 1 + blocks if self.stride == 1 else 2 * blocks + 4 + 2


# ---------------------------------------------------------------------------------------------- post-filter
def _candidate_periods(n_frames: int, cfg: dict) -> np.ndarray:
    lo = FRAME_RATE * 60.0 / cfg["max_bpm"]
    hi = min(FRAME_RATE * 60.0 / cfg["min_bpm"], n_frames / 2.0)  # at least two periods in the clip
    if hi <= lo:
        return np.zeros(0)
    return np.exp(np.arange(np.log(lo), np.log(hi), np.log1p(cfg["tempo_step"])))


def estimate_beat_grid(beat: np.ndarray, cfg: dict | None = None) -> tuple[float, float, float] | None:
    """(period, phase, correlation) of the pulse train that best matches the beat activation.

    For every candidate period ``p`` and phase ``φ`` (one-frame steps), the template is a train
    of Gaussian pulses at ``φ + k p``; its Pearson correlation with the activation is highest at
    the true period: double the period misses half the peaks, half of it adds empty pulses.
    The template's dot product with the activation is the Gaussian-smoothed activation summed
    at the pulse positions, so each period costs O(T) whatever its number of phases.
    """
    cfg = {**DEFAULT_POSTFILTER, **(cfg or {})}
    x = np.asarray(beat, dtype=np.float64)
    n = x.size
    periods = _candidate_periods(n, cfg)
    xc = x - x.mean()
    xn = np.sqrt((xc**2).sum())
    if periods.size == 0 or xn < 1e-9:
        return None
    sigma = float(cfg["pulse_width"])
    smooth = scipy.ndimage.gaussian_filter1d(xc, sigma, mode="constant", truncate=4.0) * sigma * np.sqrt(2 * np.pi)
    energy = sigma * np.sqrt(np.pi)  # Σ of one squared pulse
    area = sigma * np.sqrt(2 * np.pi)  # Σ of one pulse
    # fold the smoothed activation at every candidate period at once: frame t adds its value to
    # phase (t mod p), split linearly between the two neighbouring whole-frame phases
    n_phase = int(np.ceil(periods.max())) + 1
    frames = np.arange(n, dtype=np.float64)
    folded = np.zeros((periods.size, n_phase))
    per_chunk = max(1, int(2_000_000 // n))  # bounded memory on long recordings
    for a in range(0, periods.size, per_chunk):
        p = periods[a : a + per_chunk, None]
        r = np.mod(frames[None, :], p)
        lo = np.floor(r)
        w = r - lo
        hi = np.where(lo + 1 < p, lo + 1, 0)  # past the last whole phase, wrap round to phase 0
        rows = np.arange(p.shape[0])[:, None] * n_phase
        idx = np.concatenate([(rows + lo).ravel(), (rows + hi).ravel()]).astype(np.int64)
        wts = np.concatenate([(smooth * (1 - w)).ravel(), (smooth * w).ravel()])
        folded[a : a + per_chunk] = np.bincount(idx, wts, minlength=p.shape[0] * n_phase).reshape(-1, n_phase)
    phase = np.arange(n_phase, dtype=np.float64)
    count = np.floor((n - 1 - phase[None, :]) / periods[:, None]) + 1  # pulses of the train at phase φ
    norm = np.sqrt(np.maximum(count * energy - (count * area) ** 2 / n, 1e-12))
    corr = np.where(phase[None, :] < periods[:, None], folded / (norm * xn), -np.inf)
    j = corr.argmax(axis=1)
    corr_best, phase_best = corr[np.arange(j.size), j], phase[j]
    # a log-normal tempo prior (in octaves) settles the metrical level when the activation is ambivalent
    octaves = np.log2(FRAME_RATE * 60.0 / periods / cfg["tempo_prior_bpm"]) / cfg["tempo_prior_octaves"]
    k = int(np.argmax(corr_best - cfg["tempo_prior_weight"] * 0.5 * octaves**2))
    return float(periods[k]), float(phase_best[k]), float(corr_best[k])


def beat_dp(local: np.ndarray, period: float, tightness: float) -> tuple[np.ndarray, np.ndarray]:
    """Ellis' beat DP where a chain of beats may start anywhere: cumulative score and back-links.

    ``cum[i] = local[i] + max(0, max_lag cum[i - lag] - tightness * log(lag / P)²)`` with lags in
    ``[round(P/2), 2P]``. The ``max(0, ·)`` lets the first beat stand alone instead of inheriting
    penalties from a chain of empty frames before the music starts (the DSP tracker's DP has no
    such floor, which on a clean activation can drop the first beat). Every predecessor of a
    block of ``round(P/2)`` frames lies before the block, so each block is one vectorised step.
    """
    n = local.size
    lo = max(1, int(round(period / 2)))
    lags = np.arange(lo, max(lo, int(np.floor(2 * period))) + 1)
    penalty = -tightness * (np.log(lags) - np.log(period)) ** 2
    pad = int(lags[-1])
    cum_padded = np.full(n + pad, -np.inf)  # -inf before the clip: no predecessor there
    back = np.full(n, -1, dtype=np.int64)
    offsets = np.arange(lo)[:, None] - lags[None, :] + pad
    rows = np.arange(lo)
    for start in range(0, n, lo):
        m = min(lo, n - start)
        scores = cum_padded[offsets[:m] + start] + penalty
        best = scores.argmax(axis=1)
        best_score = scores[rows[:m], best]
        link = best_score > 0
        cum_padded[pad + start : pad + start + m] = local[start : start + m] + np.where(link, best_score, 0.0)
        back[start : start + m] = np.where(link, offsets[rows[:m], best] + start - pad, -1)
    return cum_padded[pad:], back


def _backtrack(cum: np.ndarray, back: np.ndarray, period: float) -> np.ndarray:
    """Beat frames from the best cumulative score in the last period, following back-links."""
    n = cum.size
    tail_from = max(0, n - int(np.ceil(period)))
    tail = tail_from + int(np.argmax(cum[tail_from:]))
    path = [tail]
    while back[path[-1]] >= 0:  # one step per beat
        path.append(int(back[path[-1]]))
    return np.array(path[::-1], dtype=np.int64)


def _peak_near(x: np.ndarray, frames: np.ndarray, radius: int = 2) -> np.ndarray:
    idx = np.clip(frames[:, None] + np.arange(-radius, radius + 1)[None, :], 0, x.size - 1)
    return x[idx].max(axis=1)


def choose_downbeats(down_at_beats: np.ndarray, cfg: dict | None = None) -> np.ndarray:
    """(K,) 0/1 flags: the bar length and phase of highest likelihood under the downbeat activation.

    Each beat is a Bernoulli observation: ``log d`` if the candidate marks it a downbeat, else
    ``log(1 - d)``; a small log-prior per bar length breaks near-ties toward common meters.
    """
    cfg = {**DEFAULT_POSTFILTER, **(cfg or {})}
    k = down_at_beats.size
    flags = np.zeros(k)
    if k == 0:
        return flags
    eps = float(cfg["downbeat_clip"])  # no single over-confident beat may decide the bar alone
    d = np.clip(down_at_beats.astype(np.float64), eps, 1 - eps)
    on, off = np.log(d), np.log1p(-d)
    best = (-np.inf, 1, 0)
    for meter, prior in zip(cfg["meters"], cfg["meter_log_prior"]):
        member = (np.arange(k)[None, :] % meter) == np.arange(meter)[:, None]  # (phase, beat)
        ll = np.where(member, on[None, :], off[None, :]).sum(axis=1) + prior
        phase = int(np.argmax(ll))
        if ll[phase] > best[0] + 1e-9:
            best = (float(ll[phase]), int(meter), phase)
    flags[best[2] :: best[1]] = 1.0
    return flags


def sounding_frames(logmel: Tensor | np.ndarray, silence_db: float = 60.0) -> np.ndarray:
    """(T,) bool: frames whose mel energy is within ``silence_db`` of the clip's loudest frame."""
    x = torch.as_tensor(logmel).double()
    level = torch.logsumexp(2 * x, dim=0) * (10 / np.log(10))  # dB of the summed mel power
    return (level > level.max() - silence_db).numpy()


def activations_to_beats(act: np.ndarray, cfg: dict | None = None, sounding: np.ndarray | None = None) -> np.ndarray:
    """(T, 2) beat/downbeat activations in [0, 1] → (K, 2) rows ``time_s, is_downbeat``.

    ``sounding`` (T,) marks frames with sound (``sounding_frames``): when given, no beat is
    placed before the first sound, nor, when the clip ends in silence, on the release of the
    last sound (the network tends to carry the pulse on into a final rest).
    """
    cfg = {**DEFAULT_POSTFILTER, **(cfg or {})}
    act = np.asarray(act, dtype=np.float64)
    if act.ndim != 2 or act.shape[1] != 2:
        raise CadenzaError(f"activations must have shape (frames, 2), got {act.shape}")
    beat, down = act[:, 0], act[:, 1]
    if beat.size < 3 or beat.max() < cfg["min_activation"]:
        return np.zeros((0, 2))
    grid = estimate_beat_grid(beat, cfg)
    if grid is None:
        return np.zeros((0, 2))
    period = grid[0]
    local = beat / (beat.std() + 1e-9)  # scale-free, so the tightness means the same on every clip
    cum, back = beat_dp(local, period, cfg["tightness"])
    frames = _backtrack(cum, back, period)
    # beats extrapolated past the music at either end: under a fraction of the typical beat's activation
    strength = _peak_near(beat, frames)
    strong = np.flatnonzero(strength >= cfg["edge_fraction"] * np.median(strength))
    if strong.size == 0:
        return np.zeros((0, 2))
    frames = frames[strong[0] : strong[-1] + 1]
    if sounding is not None and np.any(sounding):
        on = np.flatnonzero(sounding)
        keep = frames >= on[0] - 1
        if beat.size - 1 - on[-1] >= cfg["tail_silence_s"] * FRAME_RATE:  # the clip ends in silence
            keep &= frames + cfg["release_s"] * FRAME_RATE <= on[-1]
        frames = frames[keep]
    flags = choose_downbeats(_peak_near(down, frames), cfg)
    return np.stack([frames / FRAME_RATE, flags], axis=1).reshape(-1, 2)


# ---------------------------------------------------------------------------------------------- family
def _is_beats_config(config: dict) -> bool:
    """A beat tracker config without ``kind``/``type``: a TCN ``model`` beside a ``postfilter``."""
    return isinstance(config.get("postfilter"), dict) and isinstance(config.get("model"), dict) and "dilations" in config["model"]


@register_family(
    kind=MODEL_KIND, type=MODEL_TYPE, title="beat tracker", shipped=WEIGHTS_DIR, recognise=_is_beats_config,
    legacy_kinds=(LEGACY_KIND,), wrap=lambda net, config, folder: NeuralBeatTracker(net, config.get("postfilter")),
    task="beats", task_module="cadenza.train.beats",
    about="beat/downbeat TCN over log-mel + a dynamic-programming post-filter (the default rhythm extractor)",
)
def build_beat_tcn(config: dict) -> "BeatTCN":
    """A fresh beat/downbeat TCN from a beat tracker config (its ``model`` section)."""
    return BeatTCN(config["model"])


# ---------------------------------------------------------------------------------------------- tracker
@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: for a model this small a second thread only adds hand-off cost,
    and on a busy 2-core machine it spin-waits (a 6 s clip took 1 s instead of 20 ms)."""
    before = torch.get_num_threads()
    if before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before > 1:
            torch.set_num_threads(before)


class NeuralBeatTracker:
    """The trained TCN + post-filter as a ``RhythmTracker`` (registered as ``"neural"``)."""

    name = "neural"

    def __init__(self, model: BeatTCN, postfilter: dict | None = None) -> None:
        self.model = model.eval()
        self.postfilter = {**DEFAULT_POSTFILTER, **(postfilter or {})}
        self.mel = MelSpectrogram(MelConfig(n_mels=int(model.config["n_mels"])))

    # --- files ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | os.PathLike | None = None) -> "NeuralBeatTracker":
        """From a model folder (default: the shipped ``cadenza/weights/beats``)."""
        folder = Path(folder) if folder is not None else WEIGHTS_DIR
        if folder == WEIGHTS_DIR and not shipped_weights_available():
            raise CadenzaError(
                f"no beat tracker weights ship with this copy of Cadenza ({WEIGHTS_DIR} is incomplete)",
                "train them: python -m cadenza.train.beats --data data/corpus-small --out runs/beats, or use the 'dsp' tracker",
            )
        return load_model(folder, kind=MODEL_KIND).model  # the one weight check every family shares (cadenza.registry)

    def save(self, folder: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write the model folder (weights + config) atomically."""
        config = get_family(MODEL_KIND, MODEL_TYPE).stamp({"model": self.model.config, "postfilter": self.postfilter, **(extra or {})})
        return save_model_folder(folder, self.model.state_dict(), config)

    # --- inference -----------------------------------------------------------------------------
    @torch.inference_mode()
    def activations_from_mel(self, logmel: Tensor | np.ndarray) -> np.ndarray:
        """(n_mels, T) or (B, n_mels, T) canonical log-mel → (T, 2) or (B, T, 2) sigmoid activations."""
        x = torch.as_tensor(logmel).float()
        squeeze = x.dim() == 2
        x = x.unsqueeze(0) if squeeze else x
        with _one_torch_thread():
            out = torch.sigmoid(self.model(x)).transpose(1, 2).numpy().astype(np.float64)
        return out[0] if squeeze else out

    def _logmel(self, audio: np.ndarray, sample_rate: int) -> tuple[Tensor | None, int]:
        """Canonical log-mel of a mono waveform (None when too short for one frame) and its frame count."""
        audio = check_waveform(audio, "audio")
        if audio.ndim != 1:
            raise CadenzaError(f"beat tracking needs a mono waveform, got shape {audio.shape}", "mix down with cadenza.audio.to_mono")
        audio = resample(audio, int(sample_rate), SAMPLE_RATE)
        n_frames = audio.size // self.mel.config.hop_length + 1
        if audio.size <= self.mel.config.n_fft // 2:  # too short for one spectrogram frame: nothing to hear
            return None, n_frames
        with torch.inference_mode(), _one_torch_thread():
            return self.mel(torch.from_numpy(np.ascontiguousarray(audio))), n_frames

    def activations(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """(N,) mono waveform → (T, 2) beat/downbeat activations on the canonical frame grid."""
        logmel, n_frames = self._logmel(audio, sample_rate)
        return np.zeros((n_frames, 2)) if logmel is None else self.activations_from_mel(logmel)

    def track_mel(self, logmel: Tensor | np.ndarray) -> np.ndarray:
        """Beats from a precomputed canonical log-mel (n_mels, T) (the corpus feature cache)."""
        with _one_torch_thread():
            sounding = sounding_frames(logmel, self.postfilter["silence_db"])
        return activations_to_beats(self.activations_from_mel(logmel), self.postfilter, sounding)

    def track(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """(N,) mono waveform → (K, 2) rows ``time_s, is_downbeat``, sorted by time."""
        logmel, _ = self._logmel(audio, sample_rate)
        return np.zeros((0, 2)) if logmel is None else self.track_mel(logmel)


def shipped_weights_available() -> bool:
    """True when ``cadenza/weights/beats`` holds a complete model folder."""
    return (WEIGHTS_DIR / WEIGHTS_NAME).is_file() and (WEIGHTS_DIR / CONFIG_NAME).is_file()


@lru_cache(maxsize=4)
def _load_cached(folder: str) -> NeuralBeatTracker:
    return NeuralBeatTracker.load(folder or None)


def load_beat_tracker(folder: str | os.PathLike | None = None) -> NeuralBeatTracker:
    """A trained tracker (cached per folder, so repeated extraction does not re-read weights)."""
    return _load_cached(str(folder) if folder is not None else "")
