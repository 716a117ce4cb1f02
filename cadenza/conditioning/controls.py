"""Control encoders and the training-time control dropout (any subset, partial in time).

Controls reach the ControlNet adapter as in Music ControlNet: each control (melody T×12,
dynamics T×1, rhythm T×2) is multiplied by its mask, the mask is appended as one more input
channel (so "given as silence/zero" differs from "free"), and a per-control MLP with one hidden
layer (1×1 convolutions, i.e. the same MLP on every frame) maps it to ``out_channels``. The
per-control features are stacked along depth and enter the adapter through one zero-initialised
1×1 convolution, so a fresh adapter changes nothing.

Each control's values are mapped by its registry entry's fixed constants before the MLP
(``ControlSpec.network_input``): dynamics arrive in dBFS and become about [-1, 1]
(``(dB - DYN_CENTER_DB) / DYN_SCALE_DB``: -60 dB → -1, -10 dB → +1), so no statistic of any
data set is baked into the model. An encoder is built for a list of controls (a model's
``controls`` in its config, the shipped three by default) in that order: its channel layout.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from cadenza.controls.base import CONTROL_NAMES, ControlSet, frame_fields
from cadenza.controls.registry import CONTROLS, control
from cadenza.errors import CadenzaError

DYN_CENTER_DB = CONTROLS["dynamics"].input_center
DYN_SCALE_DB = CONTROLS["dynamics"].input_scale
CONTROL_DIMS = {name: CONTROLS[name].dim for name in CONTROL_NAMES}  # the shipped controls' numbers per frame
MASK_KEYS = tuple(f"{n}_mask" for n in CONTROL_NAMES)


def normalize_dynamics(db: torch.Tensor) -> torch.Tensor:
    """dBFS → about [-1, 1] with fixed constants."""
    return CONTROLS["dynamics"].network_input(db)


def controls_to_tensors(controls: ControlSet | Sequence[ControlSet], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """One or more ControlSets of equal length → batched tensors ``{name: (B, T, d), name_mask: (B, T)}``.

    Dynamics stay in dB here; ``ControlEncoder`` normalises them, so batches from the data
    cache and from creator files go through exactly the same path.
    """
    sets = [controls] if isinstance(controls, ControlSet) else list(controls)
    out: dict[str, torch.Tensor] = {}
    for key in frame_fields():
        arr = np.stack([np.asarray(getattr(cs, key), dtype=np.float32) for cs in sets])
        out[key] = torch.from_numpy(arr).to(device)
    for name, spec in CONTROLS.items():
        if not spec.shape:  # a scalar control (dynamics): (B, T) → (B, T, 1), like every other control
            out[name] = out[name].unsqueeze(-1)
    return out


def empty_controls(batch: int, n_frames: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """All controls free (every mask zero)."""
    out = {name: torch.zeros(batch, n_frames, spec.dim, device=device) for name, spec in CONTROLS.items()}
    out.update({spec.mask_field: torch.zeros(batch, n_frames, device=device) for spec in CONTROLS.values()})
    return out


def pad_controls(controls: dict[str, torch.Tensor], n_frames: int) -> dict[str, torch.Tensor]:
    """Right-pad every control and mask with free frames up to ``n_frames``."""
    out = {}
    for key, value in controls.items():
        pad = n_frames - value.shape[1]
        if pad < 0:
            raise ValueError(f"cannot pad {key} of {value.shape[1]} frames to {n_frames}")
        spec = (0, 0, 0, pad) if value.dim() == 3 else (0, pad)
        out[key] = torch.nn.functional.pad(value, spec) if pad else value
    return out


def check_trained_on(given: Sequence[str], trained: Sequence[str]) -> None:
    """One clear error when a control is given that the model was not trained on (it has no input for it)."""
    missing = [n for n in given if n not in trained]
    if missing:
        raise CadenzaError(
            f"this model was not trained on the control '{missing[0]}'",
            f"it follows {', '.join(trained)}; leave '{missing[0]}' out or use a model trained with it (config 'controls')",
        )


class ControlEncoder(nn.Module):
    """Per-control MLPs (value·mask ‖ mask → hidden → out) stacked and merged by a zero conv.

    ``names`` fixes which controls the network reads and the order of their features (the
    channel layout a checkpoint expects); controls outside it are ignored here, and refused
    earlier by ``check_trained_on``.
    """

    def __init__(self, hidden: int, out_channels: int, per_control: int | None = None, names: Sequence[str] = CONTROL_NAMES) -> None:
        super().__init__()
        per_control = per_control or hidden
        self.names: tuple[str, ...] = tuple(control(n).name for n in names)
        self.mlps = nn.ModuleDict(
            {
                name: nn.Sequential(nn.Conv1d(CONTROLS[name].dim + 1, hidden, 1), nn.SiLU(), nn.Conv1d(hidden, per_control, 1))
                for name in self.names
            }
        )
        self.zero_conv = nn.Conv1d(per_control * len(self.names), out_channels, 1)
        nn.init.zeros_(self.zero_conv.weight)
        nn.init.zeros_(self.zero_conv.bias)

    def features(self, controls: dict[str, torch.Tensor]) -> torch.Tensor:
        """Stacked per-control features (B, len(names)·per_control, T), before the zero conv."""
        feats = []
        for name in self.names:
            value = CONTROLS[name].network_input(controls[name])
            mask = controls[f"{name}_mask"].unsqueeze(-1)
            x = torch.cat([value * mask, mask], dim=-1).transpose(1, 2)  # (B, d+1, T)
            feats.append(self.mlps[name](x))
        return torch.cat(feats, dim=1)

    def forward(self, controls: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.zero_conv(self.features(controls))


def random_control_masks(
    masks: dict[str, torch.Tensor],
    generator: torch.Generator | None = None,
    p_keep_all: float = 0.3,
    p_drop_all: float = 0.2,
    p_partial: float = 0.5,
) -> dict[str, torch.Tensor]:
    """Training-time masking so the model learns any subset of controls over any spans.

    Per example: keep all controls with ``p_keep_all``, drop all with ``p_drop_all``, otherwise
    keep each control by a fair coin (re-drawn until the subset is neither all nor none, so
    those two stay exactly as likely as asked). Then with ``p_partial`` ("full + partial"
    masking) zero one random span [t_a, t_b) of each kept control. Input masks (B, T) are
    multiplied, so frames already free stay free. The controls are those of ``masks``, in
    registry order (for the shipped three the random draws are those of the three-bit version).
    """
    names = [n for n in CONTROLS if f"{n}_mask" in masks]
    first = masks[f"{names[0]}_mask"]
    batch, n_frames = first.shape
    dev = first.device
    rand = lambda *shape: torch.rand(*shape, generator=generator).to(dev)  # noqa: E731

    # subset choice: all / none / a proper non-empty subset (uniform over the 2^n - 2 of them)
    u = rand(batch)
    n = len(names)
    proper = torch.tensor([[int(b) for b in f"{k:0{n}b}"] for k in range(1, max(2**n - 1, 2))], dtype=torch.float32, device=dev)
    pick = proper[(rand(batch) * len(proper)).long().clamp(max=len(proper) - 1)]  # (B, n)
    keep = torch.where((u < p_keep_all)[:, None], torch.ones_like(pick), pick)
    keep = torch.where((u >= p_keep_all)[:, None] & (u < p_keep_all + p_drop_all)[:, None], torch.zeros_like(pick), keep)

    partial = rand(batch) < p_partial  # (B,)
    ends = torch.sort((rand(batch, len(names), 2) * (n_frames + 1)).floor(), dim=-1).values  # (B, n, 2)
    t = torch.arange(n_frames, device=dev, dtype=torch.float32)
    in_span = (t >= ends[..., :1]) & (t < ends[..., 1:])  # (B, n, T)
    span_free = in_span & partial[:, None, None]
    out = {}
    for i, name in enumerate(names):
        key = f"{name}_mask"
        out[key] = masks[key] * keep[:, i : i + 1] * (~span_free[:, i]).float()
    return out
