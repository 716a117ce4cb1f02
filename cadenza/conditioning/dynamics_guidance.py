"""Dynamics guidance: once sampling is done, give the output's loudness contour the shape of the given curve.

Why: the dynamics control is a loudness curve (frame RMS in dBFS, smoothed over about a
second, ``cadenza.controls.dynamics``), and loudness is the one control a log-mel states in
closed form: a frame's level follows from its mel magnitudes (pseudo-inverse of the filter
bank, then the window-normalised mean square), which tracks the extractor's curve closely
(``tests/conditioning/test_dynamics_guidance.py`` holds it to r > 0.99 within 1.5 dB).
So once the sampler is done, the output mel gets the per-frame gain that puts its smoothed
level contour on the target inside the dynamics mask: the same number of dB on every mel bin of
a frame, a volume automation. The gain is solved by least squares through the control's own
one-second smoothing (``DynamicsGuide.gain_db``), so short features come out as asked instead
of flattened. The span keeps its average level (only the contour moves), and the quarter second
at each edge of a partial span, whose smoothed level also hears the free frames outside, is not
chased.

Only the contour is matched, not the absolute level: the generator's mels are often far louder
than the target (outputs are peak-limited after vocoding, which sets the clip's level), and
pulling them down by tens of dB fought the network. Only the finished output is corrected:
applied to the clean estimate at every step (or at every step below noise level 0.6) a simpler
one-shot gain lifted dynamics r on the valid cases but the DSP beat tracker and spectral
flatness got worse (``docs/generator/README.md``), as if later steps rebuilt onsets around the
changed loudness; after the last step nothing is rebuilt.

Why it cannot "game" the metric: a gain common to all bins of a frame changes only how loud
the frame is; it cannot draw the narrow-band patterns that fool a pitch or beat extractor.
Judges it is not steered by (an A-weighted loudness meter over 400 ms windows,
``cadenza.eval.judges``; basic-pitch; the DSP beat tracker; spectral flatness; FAD) check it.

``s`` (the strength, 0–1) scales the solved gain; frames outside the dynamics mask get none,
and known frames (continuation, inpainting, earlier windows) keep theirs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from cadenza.audio.mel import LOG_MEL_MAX, LOG_MEL_MIN, MelConfig, _mel_pinv
from cadenza.controls.dynamics import smooth_db, smooth_linear

MAX_GAIN_DB = 24.0  # at most this much gain on any frame: a target far from anything the model drew stays musical
EDGE_FRAMES = 22  # ≈ 0.25 s raised-cosine ramp of the gain at the edges of a partial dynamics span (no gain steps)
FIT_INSET_FRAMES = 22  # ≈ 0.25 s: the fit ignores this many frames at a span's edges, then ramps in over EDGE_FRAMES
KNOT_FRAMES = 8  # the gain is a piecewise-linear curve with a knot every 8 frames (≈ 93 ms)
PASSES = 2  # least-squares solves of the gain, each on the result of the last (see ``DynamicsGuide.gain_db``)
SMOOTHNESS = 1.0  # λ: weight of the gain's second difference between knots (dB²), against ringing
RIDGE = 1e-3  # ε: keeps frames the target does not constrain at no gain
LEVEL_ANCHOR = 1.0  # μ: weight (per fitted frame) that keeps the gain's mean over the span at 0 dB
DB_TO_LOG_MAGNITUDE = math.log(10.0) / 20.0  # +1 dB of level = this much on a natural-log magnitude mel


def _window_mean_square_weights(config: MelConfig) -> torch.Tensor:
    """(n_fft // 2 + 1,) weights: one-sided |STFT|² → window-normalised mean square (a full-scale sine reads 0.5)."""
    n = config.n_fft
    window = torch.hann_window(config.win_length, dtype=torch.float64)
    c = torch.full((n // 2 + 1,), 2.0, dtype=torch.float64)
    c[0] = c[-1] = 1.0
    return (c / (n * float((window**2).sum()))).float()


def mel_level_db(log_mel: torch.Tensor, config: MelConfig = MelConfig()) -> torch.Tensor:
    """(B, n_mels, T) natural-log magnitude mel → (B, T) unsmoothed frame level in dBFS (floored at -100)."""
    magnitude = torch.clamp(_mel_pinv(config).to(log_mel) @ torch.exp(log_mel), min=0.0)
    mean_square = torch.einsum("f,bft->bt", _window_mean_square_weights(config).to(log_mel), magnitude**2)
    return 10.0 * torch.log10(torch.clamp(mean_square, min=1e-10))


def smoothed_mel_level_db(log_mel: torch.Tensor, config: MelConfig = MelConfig()) -> torch.Tensor:
    """The dynamics control's curve estimated from a log-mel: level, then the extractor's own smoothing."""
    level = mel_level_db(log_mel.float(), config).cpu().numpy()
    return torch.from_numpy(smooth_db(level)).to(log_mel.device)


def edge_ramp(mask: torch.Tensor, frames: int = EDGE_FRAMES, inset: int = 0) -> torch.Tensor:
    """(B, T) {0,1} mask → weights that rise over ``frames`` frames inside each span's edges (1 deep inside).

    A gain that jumped from 0 to several dB in one 11.6 ms frame at the edge of a partial
    span would click; the ramp keeps it a short fade while frames outside the mask stay at 0.
    """
    if frames <= 1 and inset <= 0:
        return mask
    # distance (in frames) to the nearest frame outside the mask, capped at ``frames``
    inside = mask > 0
    t = mask.shape[-1]
    idx = torch.arange(t, device=mask.device).expand_as(mask)
    far = 2 * t + frames + inset + 1  # "no edge on this side": farther than any ramp and inset reach
    big = torch.full_like(idx, far)
    last_out = torch.cummax(torch.where(inside, torch.full_like(idx, -far), idx), dim=-1).values
    next_out = torch.flip(torch.cummin(torch.flip(torch.where(inside, big, idx), [-1]), dim=-1).values, [-1])
    span = next_out - last_out - 1  # length of the span each frame is in (long for a mask without edges)
    inset_here = torch.clamp(span // 4, max=inset)  # a short span keeps half its frames
    dist = (torch.minimum(idx - last_out, next_out - idx) - inset_here).clamp(min=0, max=max(frames, 1)).float()
    ramp = 0.5 - 0.5 * torch.cos(math.pi * dist / max(frames, 1))
    return torch.where(inside, ramp, torch.zeros_like(ramp))


@lru_cache(maxsize=16)
def knot_matrix(n_frames: int, step: int = KNOT_FRAMES) -> np.ndarray:
    """(T, K) linear interpolation from gain knots every ``step`` frames to every frame (rows sum to 1)."""
    knots = np.arange(0, n_frames - 1 + step, step, dtype=np.float64)
    t = np.arange(n_frames, dtype=np.float64)[:, None]
    return np.clip(1.0 - np.abs(t - knots[None, :]) / step, 0.0, None)


def solve_gain(level: np.ndarray, target: np.ndarray, fit: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """(B, T) gains in dB: the least-squares problem of ``DynamicsGuide.gain_db``, one small solve per clip.

    The gain lives on knots every ``KNOT_FRAMES`` frames (a smooth curve by construction, and a
    K × K system instead of T × T, so a 24 s window costs milliseconds); ``S`` is applied to the
    knot basis column by column with the control's own filter.
    """
    out = np.zeros_like(level, dtype=np.float64)
    n = level.shape[-1]
    basis = knot_matrix(n, KNOT_FRAMES)
    k = basis.shape[1]
    second = np.diff(np.eye(k), n=2, axis=0)
    reg = SMOOTHNESS * second.T @ second + RIDGE * np.eye(k)
    smooth_level = smooth_linear(level, axis=-1)
    for i in range(level.shape[0]):  # a few clips per batch: one K × K solve each
        if not (fit[i] > 0).any():
            continue
        gain_basis = weight[i][:, None] * basis  # (T, K): frames outside the mask get no gain
        a = smooth_linear(gain_basis, axis=0)  # S · diag(w) · P
        root = np.sqrt(fit[i])
        design = np.concatenate([root[:, None] * a, -root[:, None]], axis=1)  # the last column: the free offset
        rhs = root * (target[i] - smooth_level[i])
        normal = design.T @ design
        normal[:k, :k] += reg
        if LEVEL_ANCHOR > 0:  # μ Σm · (mean_m(g))²: the span keeps its own average level
            mean_row = (fit[i] @ gain_basis) / fit[i].sum()
            normal[:k, :k] += LEVEL_ANCHOR * fit[i].sum() * np.outer(mean_row, mean_row)
        normal[k, k] += 1e-9
        solution = np.linalg.solve(normal, design.T @ rhs)
        out[i] = gain_basis @ solution[:k]
    return out


@dataclass
class DynamicsGuide:
    """The loudness correction of a finished sample (see the module docstring).

    ``target_db`` and ``mask`` are (B, T) on the sampler's frame grid; ``to_log_mel`` maps the
    sampler's units to a natural-log magnitude mel, and ``log_mel_scale`` (n_mels,) says how many
    sampler units one natural-log unit of magnitude is in each bin (the per-bin standardisation).
    """

    target_db: torch.Tensor
    mask: torch.Tensor
    strength: float
    to_log_mel: Callable[[torch.Tensor], torch.Tensor]
    log_mel_scale: torch.Tensor
    config: MelConfig = MelConfig()
    max_gain_db: float = MAX_GAIN_DB

    def __post_init__(self) -> None:
        given = (self.mask > 0).float()
        self.weight = edge_ramp(given)  # where the gain may act
        # where the smoothed level is asked to meet the target: not at a span's edges, where the
        # one-second smoothing averages in frames outside the span that keep their own level (chasing
        # the target there takes large gain swings just inside the edge; at insets of 0 and 11 frames
        # they cost the DSP tracker the beats of partial spans on the valid cases, at 22 they did not)
        self.fit = edge_ramp(given, EDGE_FRAMES, inset=FIT_INSET_FRAMES)

    def gain_db(self, x0: torch.Tensor) -> torch.Tensor:
        """(B, T) dB to add to each frame of ``x0`` so that its smoothed level follows the target's contour.

        Solved, not guessed: the control smooths the level over a second, so the gain that makes the
        *smoothed* level meet the target is a deconvolution (a gain measured on smoothed curves and put
        on raw frames is smoothed again and comes out flattened; near a span's edge the smoothing
        averages in frames outside it, which keep their level). Per clip, least squares over the gain
        ``g = w · u`` (``w`` the mask with its edge ramps) and one free offset ``c`` (the contour, not
        the absolute level: outputs are peak-limited after vocoding, which sets a clip's level)::

            min ‖m · (S (l + g) − target − c)‖² + λ ‖Δ² u‖² + ε ‖u‖² + μ Σm · (mean_m g)²

        with ``S`` the extractor's smoothing, ``l`` the frames' unsmoothed level and ``m`` the mask,
        zero for ``FIT_INSET_FRAMES`` at a span's edges and ramped in after them. The last term (the
        level anchor) keeps the span's average level where the model put it: with a free offset the
        mean gain is otherwise set only by the edges, and on the valid cases the solve then sank
        whole spans by up to 24 dB to bend the edge frames, whose smoothing reaches outside the span,
        onto the target, and the DSP beat tracker lost the beats inside them (``dynamics_guidance_variants.md``).
        Bins at the decoder's clamp make the level respond less than linearly, so the solve is repeated
        ``PASSES`` times on the corrected estimate.
        """
        total = np.zeros((x0.shape[0], x0.shape[-1]))
        scale = self.log_mel_scale.to(x0)[None, :, None] * DB_TO_LOG_MAGNITUDE
        target, fit, weight = (v.double().cpu().numpy() for v in (self.target_db, self.fit, self.weight))
        for _ in range(PASSES):
            shifted = x0 + torch.from_numpy(total).to(x0)[:, None, :] * scale
            level = mel_level_db(self.to_log_mel(shifted).float(), self.config).double().cpu().numpy()
            total = np.clip(total + solve_gain(level, target, fit, weight), -self.max_gain_db, self.max_gain_db)
        return torch.from_numpy(total).to(x0)

    def correction(self, x0: torch.Tensor) -> torch.Tensor:
        """δ (B, n_mels, T) in sampler units: ``strength`` × the gain, the same dB on every bin of a frame."""
        gain = self.strength * self.gain_db(x0) * DB_TO_LOG_MAGNITUDE
        return gain[:, None, :] * self.log_mel_scale.to(x0)[None, :, None]


def mel_sampler_units(mel_mean: torch.Tensor, mel_std: torch.Tensor) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """(to_log_mel, log_mel_scale) for a sampler over standardised normalised mels.

    The generator diffuses ``(normalize_log_mel(log_mel) − mean) / std`` per bin
    (``MusicControlNet.standardize``); normalisation maps [LOG_MEL_MIN, LOG_MEL_MAX] to [−1, 1].
    Values outside [−1, 1] are clamped as the representation's decoder clamps them: a clean
    estimate's stray peaks would otherwise dominate the level (they are never heard).
    """
    span = (LOG_MEL_MAX - LOG_MEL_MIN) / 2.0

    def to_log_mel(x: torch.Tensor) -> torch.Tensor:
        normalised = (x * mel_std.to(x)[:, None] + mel_mean.to(x)[:, None]).clamp(-1.0, 1.0)  # as decoding clamps
        return (normalised + 1.0) * span + LOG_MEL_MIN

    return to_log_mel, 1.0 / (span * mel_std)


def check_strength(value: object, what: str = "dynamics guidance") -> float:
    """A strength in [0, 1] (0 = off), or one clear error."""
    from cadenza.errors import CadenzaError

    try:
        s = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CadenzaError(f"{what} must be a number in [0, 1], got {value!r}", "e.g. 1 (the full loudness correction) or 0 (off)") from None
    if not np.isfinite(s) or not 0.0 <= s <= 1.0:
        raise CadenzaError(f"{what} must be in [0, 1], got {value!r}", "1 gives the output the whole solved gain, 0 turns it off")
    return s
