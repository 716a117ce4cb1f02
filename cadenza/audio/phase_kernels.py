"""Fused CPU kernels (numba) for the inference path of :mod:`cadenza.audio.phase`.

Why: on a CPU the phase code is memory-bound, not compute-bound. Peak picking, the locked
phase and each refinement step are a dozen or more element-wise torch passes over a
(frames × bins) array, each one a full trip through memory (on the 2-core CI machine a pass
over 10 s of spectrum costs 0.1–0.6 ms, and ``cummax`` over bins 1.6 ms). Here each of them is
one pass per frame: a row of 513 bins stays in cache while every step runs on it. The math is
the torch code's, step for step; the one approximation is the mel gain's ``exp``, a vectorised
polynomial within 3e-7 (the tests check the results against the torch code).

Used only where it applies (:func:`applies`): CPU tensors of float32/complex64 that need no
gradient, outside TorchScript tracing and ONNX export. Training, other devices, other dtypes
and exported graphs take the torch code, which stays the reference.
``CADENZA_PHASE_KERNELS=0`` in the environment turns the kernels off. Kernel launches are
serialised with a lock: numba's default threading layer does not allow two parallel launches
at once (a server may call from several threads).
"""

from __future__ import annotations

import math
import os
import threading
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

try:
    import numba
except ImportError:  # numba comes with librosa; without it the torch code runs
    numba = None

ENABLED = numba is not None and os.environ.get("CADENZA_PHASE_KERNELS", "1") != "0"
_LOCK = threading.Lock()
# numba picks its OpenMP threading layer here, which shares torch's GNU OpenMP runtime (the
# workqueue layer, contending with torch's threads, made the vocoder 1.5x slower). GNU OpenMP does
# not survive fork(): numba aborts a forked child that launches a kernel after its parent did.
# So a fork of a process that launched kernels runs the torch code instead.
_launched_in: int | None = None
_FLOAT_TYPES = (torch.float32, torch.complex64)


def applies(*tensors: Tensor) -> bool:
    """Whether the kernels can stand in for the torch code on these tensors."""
    if not ENABLED or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():  # exports record the torch graph
        return False
    if _launched_in is not None and _launched_in != os.getpid():  # a forked child (see _launched_in)
        return False
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    return not grad and all(t.device.type == "cpu" and t.dtype in _FLOAT_TYPES for t in tensors)


def _threads() -> None:
    """Before each launch: numba's threads follow torch's, and the launching process is noted."""
    global _launched_in
    _launched_in = os.getpid()
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def _array(t: Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor (a contiguous copy only if it is not contiguous)."""
    t = t.detach()
    if t.is_complex():
        t = torch.view_as_real(t.contiguous())
    return t.contiguous().numpy()


def _jit(fn):
    """numba's parallel JIT, cached beside the module (or in numba's user cache dir)."""
    try:
        return numba.njit(parallel=True, cache=True, nogil=True)(fn)
    except RuntimeError:  # no writable cache location: compile once per process instead
        return numba.njit(parallel=True, nogil=True)(fn)


if numba is not None:

    @_jit
    def _peaks(m, scale, floor, advance, ref):  # pragma: no cover - compiled; tested through peak_advances
        rows, K = m.shape
        lo_value = np.float32(-1e4)
        for r in numba.prange(rows):
            row = m[r]
            threshold = floor * row.max()
            log_mag = np.empty(K, np.float32)
            offset = np.zeros(K, np.float32)
            peak = np.zeros(K, np.bool_)
            for k in range(K):
                log_mag[k] = math.log(max(row[k], np.float32(1e-7)))
            for k in range(K):
                below = log_mag[k - 1] if k > 0 else lo_value
                above = log_mag[k + 1] if k < K - 1 else lo_value
                if log_mag[k] > below and log_mag[k] >= above and row[k] > threshold:
                    peak[k] = True
                    curvature = below - np.float32(2.0) * log_mag[k] + above
                    if curvature < np.float32(-1e-6):
                        o = np.float32(0.5) * (below - above) / curvature
                        offset[k] = min(max(o, np.float32(-0.5)), np.float32(0.5))
            low = np.empty(K, np.int64)
            last = -4 * K
            for k in range(K):
                if peak[k]:
                    last = k
                low[k] = last
            nearest_above = 5 * K
            for k in range(K - 1, -1, -1):
                if peak[k]:
                    nearest_above = k
                j = low[k] if k - low[k] <= nearest_above - k else nearest_above
                if j < 0 or j >= K:
                    j = k
                ref[r, k] = j
                advance[r, k] = scale * (np.float32(j) + offset[j])

    @_jit
    def _integrate(advance, start, cumulative, wrapped):  # pragma: no cover - compiled
        B, T, K = advance.shape
        width = 32
        chunks = (K + width - 1) // width
        two_pi = 2.0 * math.pi
        inverse_two_pi = 1.0 / two_pi
        for job in numba.prange(B * chunks):
            b, c = job // chunks, job % chunks
            k0, k1 = c * width, min(K, (c + 1) * width)
            acc = start[b, k0:k1].copy()
            for t in range(T):
                for k in range(k0, k1):
                    acc[k - k0] += advance[b, t, k]
                    x = acc[k - k0]
                    cumulative[b, t, k] = x
                    w = x - np.floor(x * inverse_two_pi) * two_pi  # torch.remainder to float64 rounding, without a libm call
                    if w < 0.0:
                        w += two_pi
                    elif w >= two_pi:
                        w -= two_pi
                    wrapped[b, t, k] = np.float32(w)

    @_jit
    def _gather_locked(wrapped, ref, phase):  # pragma: no cover - compiled
        B, T, K = wrapped.shape
        pi = np.float32(math.pi)
        for job in numba.prange(B * T):
            b, t = job // T, job % T
            for k in range(K):
                j = ref[b, t, k]
                phase[b, t, k] = wrapped[b, t, j] - pi * np.float32(k - j)

    @_jit
    def _overlap_add(frames, window, inverse_envelope, skip, wave):  # pragma: no cover - compiled
        B, T, N = frames.shape
        hop = inverse_envelope.shape[1]
        r = N // hop
        length = wave.shape[1]
        first, last = skip // hop, (length + skip - 1) // hop  # the untrimmed hop-blocks that reach the output
        blocks = last - first + 1
        for job in numba.prange(B * blocks):
            b, q = job // blocks, first + job % blocks
            total = np.zeros(hop, np.float32)
            for j in range(r):  # frame q - j contributes its slice j, added in the torch code's order
                t = q - j
                if 0 <= t < T:
                    for p in range(hop):
                        total[p] += frames[b, t, j * hop + p] * window[j * hop + p]
            base = q * hop - skip
            for p in range(max(0, -base), min(hop, length - base)):
                wave[b, base + p] = total[p] * inverse_envelope[q, p]

    @_jit
    def _frame(wave, window, hop, frames):  # pragma: no cover - compiled
        B, T, N = frames.shape
        length = wave.shape[1]
        half = N // 2
        for job in numba.prange(B * T):
            b, t = job // T, job % T
            for j in range(N):
                v = t * hop + j - half  # reflect padding by N // 2 on both sides
                if v < 0:
                    v = -v
                elif v >= length:
                    v = 2 * (length - 1) - v
                frames[b, t, j] = wave[b, v] * window[j]

    @numba.njit(cache=True, nogil=True, inline="always")
    def _project(rebuilt, prev, ratio, has_prev, r, k, target, out):  # pragma: no cover - compiled
        """One bin of a projection: ``out = target * z / |z|`` with ``z = rebuilt - ratio * prev``."""
        re, im = rebuilt[r, k, 0], rebuilt[r, k, 1]
        if has_prev:
            re = re - ratio * prev[r, k, 0]
            im = im - ratio * prev[r, k, 1]
        scale = target / math.sqrt(max(re * re + im * im, np.float32(1e-16)))
        out[r, k, 0] = re * scale
        out[r, k, 1] = im * scale

    @_jit
    def _mel_refine_step(rebuilt, prev, ratio, has_prev, log_target, basis_idx, basis_w,
                         spread_idx, spread_w, log_max_gain, out):  # pragma: no cover - compiled
        rows, K, _ = rebuilt.shape
        M = log_target.shape[1]
        basis_width, width = basis_idx.shape[1], spread_idx.shape[1]
        log2e, ln2 = np.float32(1.4426950408889634), np.float32(0.6931471805599453)
        for r in numba.prange(rows):
            magnitude = np.empty(K, np.float32)
            for k in range(K):
                re, im = rebuilt[r, k, 0], rebuilt[r, k, 1]
                magnitude[k] = math.sqrt(re * re + im * im)
            bands = np.zeros(M, np.float32)
            for k in range(K):  # each bin adds its magnitude to the few bands that cover it
                for i in range(basis_width):
                    bands[basis_idx[k, i]] += basis_w[k, i] * magnitude[k]
            log_gain = np.empty(M, np.float32)
            for m in range(M):  # each band's log-gain toward the target mel, clamped
                g = log_target[r, m] - math.log(max(bands[m], np.float32(1e-5)))
                log_gain[m] = min(max(g, -log_max_gain), log_max_gain)
            # each bin's gain exp(Σ spread · log_gain): 2^n · e^y with |y| ≤ ln2 / 2, a degree-7 Taylor
            # polynomial (about 3e-7 relative after float32 rounding); it vectorises, unlike a call to expf
            exponent = np.zeros(K, np.float32)
            for k in range(K):
                for i in range(width):
                    exponent[k] += spread_w[k, i] * log_gain[spread_idx[k, i]]
            power = np.empty(K, np.int32)
            poly = np.empty(K, np.float32)
            for k in range(K):  # a loop of plain arithmetic, so it vectorises
                x = min(max(exponent[k], np.float32(-80.0)), np.float32(80.0)) * log2e
                n = np.floor(x + np.float32(0.5))
                y = (x - n) * ln2
                poly[k] = np.float32(1.0) + y * (np.float32(1.0) + y * (np.float32(0.5) + y * (np.float32(1.0 / 6) + y * (
                    np.float32(1.0 / 24) + y * (np.float32(1.0 / 120) + y * (np.float32(1.0 / 720) + y * np.float32(1.0 / 5040)))))))
                power[k] = (np.int32(n) + np.int32(127)) << np.int32(23)
            scale2 = power.view(np.float32)
            for k in range(K):
                _project(rebuilt, prev, ratio, has_prev, r, k, magnitude[k] * poly[k] * scale2[k], out)

    @_jit
    def _refine_step(rebuilt, prev, ratio, has_prev, mag, out):  # pragma: no cover - compiled
        rows, K, _ = rebuilt.shape
        for r in numba.prange(rows):
            for k in range(K):
                _project(rebuilt, prev, ratio, has_prev, r, k, mag[r, k], out)


def warm_up() -> None:
    """Run every kernel once on a tiny input, so the first real call does not pay numba's start-up.

    A fresh process spends about 0.5 s on the first kernel call (numba's threading runtime and
    loading the cached machine code). :func:`warm_up_in_background` hides that behind whatever
    the caller does next (loading weights, running a network); a real call waits on the lock
    instead of loading the kernels a second time.
    """
    if not ENABLED:
        return
    K, T = 9, 6
    mag = torch.rand(1, T, K)
    advance, ref = peak_advances(mag, 0.5, 1e-3)
    integrate_locked(advance, ref, torch.zeros(1, K, dtype=torch.float64))
    spec = torch.polar(mag, torch.zeros_like(mag))
    out = torch.empty_like(spec)
    refine_step(spec, spec, 0.5, mag, out)
    refine_step(spec, None, 0.5, mag, out)
    basis = torch.eye(3, K)
    mel_refine_step(spec, spec, 0.5, torch.zeros(1, T, 3), SparseMel(basis, basis.T.contiguous(), 1.0), 2.3, out)
    mel_refine_step(spec, None, 0.5, torch.zeros(1, T, 3), SparseMel(basis, basis.T.contiguous(), 1.0), 2.3, out)
    window, envelope = torch.hann_window(8), torch.ones(T + 3, 2)
    wave = overlap_add(torch.zeros(1, T, 8), window, envelope, 2 * (T - 1))
    frame(wave, window, 2)


_warm: threading.Thread | None = None


def warm_up_in_background() -> None:
    """:func:`warm_up` in a daemon thread, once per process."""
    global _warm
    if ENABLED and _warm is None:
        _warm = threading.Thread(target=warm_up, name="cadenza-phase-kernels-warm-up", daemon=True)
        _warm.start()


def peak_advances(mag_frames: Tensor, scale: float, floor: float) -> tuple[Tensor, Tensor]:
    """Frame-major (B, T, K) advance (float32) and reference bin (int64); see ``phase.peak_advances``."""
    B, T, K = mag_frames.shape
    m = _array(mag_frames.float()).reshape(B * T, K)
    advance = np.empty((B * T, K), np.float32)
    ref = np.empty((B * T, K), np.int64)
    with _LOCK:
        _threads()
        _peaks(m, np.float32(scale), np.float32(floor), advance, ref)
    return torch.from_numpy(advance).reshape(B, T, K), torch.from_numpy(ref).reshape(B, T, K)


def integrate_locked(advance_frames: Tensor, ref_frames: Tensor, start: Tensor) -> tuple[Tensor, Tensor]:
    """Frame-major locked phase (float32) and running sums (float64) from advances and references.

    ``start`` (B, K) float64 is added to every running sum (the integral before frame 0).
    """
    B, T, K = advance_frames.shape
    advance = _array(advance_frames)
    ref = _array(ref_frames)
    cumulative = np.empty((B, T, K), np.float64)
    wrapped = np.empty((B, T, K), np.float32)
    phase = np.empty((B, T, K), np.float32)
    with _LOCK:
        _threads()
        _integrate(advance, np.ascontiguousarray(start.detach().numpy(), dtype=np.float64), cumulative, wrapped)
        _gather_locked(wrapped, ref, phase)
    return torch.from_numpy(phase), torch.from_numpy(cumulative)


def overlap_add(frames: Tensor, window: Tensor, inverse_envelope: Tensor, length: int) -> Tensor:
    """``inverse_stft``'s overlap-add of windowed frames (B, T, n_fft), normalised and trimmed to ``length``."""
    B = frames.shape[0]
    wave = np.empty((B, length), np.float32)
    with _LOCK:
        _threads()
        _overlap_add(_array(frames), _array(window), _array(inverse_envelope), frames.shape[-1] // 2, wave)
    return torch.from_numpy(wave)


def frame(wave: Tensor, window: Tensor, hop: int) -> Tensor:
    """Reflect-padded, windowed frames (B, T, n_fft) of ``wave`` (B, L), as ``torch.stft(center=True)`` cuts them."""
    B, L = wave.shape
    N = window.shape[0]
    frames = np.empty((B, L // hop + 1, N), np.float32)
    with _LOCK:
        _threads()
        _frame(_array(wave), _array(window), hop, frames)
    return torch.from_numpy(frames)


def _per_bin(per_bin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A (K, n_mels) matrix with few nonzeros per row as (column, value) pairs per row, zero-padded."""
    width = max(1, int((per_bin != 0).sum(axis=1).max()))
    order = np.argsort(per_bin == 0, axis=1, kind="stable")[:, :width]  # each row's nonzero columns first
    return np.ascontiguousarray(order, dtype=np.int64), np.ascontiguousarray(np.take_along_axis(per_bin, order, axis=1), dtype=np.float32)


class SparseMel:
    """The mel filter bank and the spread bin by bin (built once per refinement).

    A triangular bank covers each bin with at most two bands, so each bin keeps its few
    (band, weight) pairs of the bank and of the spread (times the over-relaxation).
    """

    def __init__(self, basis: Tensor, spread: Tensor, relax: float = 1.0) -> None:
        self.basis_idx, self.basis_w = _per_bin(basis.detach().float().T.numpy())
        self.spread_idx, self.spread_w = _per_bin(spread.detach().float().numpy() * np.float32(relax))


@lru_cache(maxsize=8)
def sparse_mel(basis: Tensor, spread: Tensor, relax: float) -> SparseMel:
    """:class:`SparseMel`, built once per filter bank (tensors hash by identity, and the mel code reuses one per config)."""
    return SparseMel(basis, spread, relax)


def _step_views(rebuilt: Tensor, prev: Tensor | None, out: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B*T, K, 2) float32 views of a refinement step's input, previous estimate (the input itself
    when there is none) and output, the layout both step kernels take."""
    B, T, K = rebuilt.shape
    r = _array(rebuilt).reshape(B * T, K, 2)
    p = r if prev is None else _array(prev).reshape(B * T, K, 2)
    return r, p, torch.view_as_real(out).numpy().reshape(B * T, K, 2)


def mel_refine_step(rebuilt: Tensor, prev: Tensor | None, ratio: float, log_target: Tensor, mel: SparseMel,
                    log_max_gain: float, out: Tensor) -> None:
    """:func:`refine_step` onto the mel-consistent magnitude of ``rebuilt``, all in one pass per frame.

    ``log_target`` (B, T, n_mels) is the target log-mel.
    """
    r, p, o = _step_views(rebuilt, prev, out)
    with _LOCK:
        _threads()
        _mel_refine_step(r, p, np.float32(ratio), prev is not None, _array(log_target).reshape(r.shape[0], -1),
                         mel.basis_idx, mel.basis_w, mel.spread_idx, mel.spread_w, np.float32(log_max_gain), o)


def refine_step(rebuilt: Tensor, prev: Tensor | None, ratio: float, mag: Tensor, out: Tensor) -> None:
    """One fast Griffin-Lim projection, frame-major (B, T, K), written into ``out`` (complex64).

    ``out = mag * z / |z|`` with ``z = rebuilt - ratio * prev`` (just ``rebuilt`` without ``prev``).
    """
    r, p, o = _step_views(rebuilt, prev, out)
    with _LOCK:
        _threads()
        _refine_step(r, p, np.float32(ratio), prev is not None, _array(mag).reshape(r.shape[:2]), o)
