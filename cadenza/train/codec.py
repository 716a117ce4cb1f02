"""Training the RVQ codec (``cadenza train codec``): mel-domain first, optionally end to end.

1. **mel phase** (``step < train.wave_start``): the codec decodes to the frozen vocoder's
   128-band log-mel, so the loss is the L1 between the decoded and the true log-mel of each
   crop (weight ``loss.mel_weight``) plus the RVQ commitment loss. No waveform is synthesised
   per step, which is what lets a CPU hour buy thousands of steps.
2. **wave phase** (``step >= train.wave_start``, optional): the decoded mel goes through the
   frozen vocoder (``train.phase_iters`` refinement iterations, gradients flowing into the
   codec only) and the waveform is scored with the vocoder's own losses, reused from
   :mod:`cadenza.representations.discriminators`: mel L1 of the resynthesis, the
   multi-resolution STFT loss and, when ``loss.adv_weight`` > 0, the multi-period +
   multi-resolution discriminators' hinge and feature-matching losses.

**Decoder retraining on frozen tokens** (``train.init_from=FOLDER train.freeze_tokens=true``):
the encoder and codebooks are loaded from a trained codec and never change, so every clip keeps
its codes and token models trained on them stay valid (the codec's ``token_digest``); only the
decoder learns (``train.init_parts`` picks what is loaded: a wider decoder,
``model.decoder_dim``, starts fresh). Quantizer dropout is then one random prefix per clip.

The loop, checkpoints and resume are the runner's; validation (``mel_l1``) is the mel L1 of the
full codec (all codebooks, rendered by the vocoder) on fixed crops of the valid split, which
picks the "best" checkpoint; ``mel_l1_half`` is the same at half the codebooks.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from torch import Tensor

from cadenza.audio import MelConfig, MelSpectrogram
from cadenza.checkpoint import WEIGHTS_NAME
from cadenza.errors import CadenzaError
from cadenza.registry import get_family, register_task
from cadenza.representations.codec.codec import build_codec, resolve_codec_dir
from cadenza.representations.discriminators import (
    MultiResolutionSTFTLoss,
    build_discriminators,
    discriminator_step_loss,
    generator_adversarial_losses,
)
from cadenza.representations.vocoder import Vocoder, load_vocoder, resolve_vocoder_dir
from cadenza.train.tasks import DataSpec, _inner
from cadenza.train.vocoder import VocoderModule, VocoderTask


def vocoder_section(config: dict) -> dict:
    """The config's ``vocoder`` section as a dict (``path`` defaults to the shipped one)."""
    section = config.get("vocoder") or {}
    return {"path": section} if isinstance(section, str) else {"path": "default", **section}


class CodecModule(L.LightningModule):
    """Codec network (+ discriminators for the wave phase); manual optimisation like the vocoder's."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.config = config
        self.net = build_codec(config)
        t = config["train"]
        self.freeze_tokens = bool(t.get("freeze_tokens", False))
        if self.freeze_tokens and not {"encoder", "quantizer"} <= set(loaded_parts(t)):
            raise CadenzaError("train.freeze_tokens needs the encoder and codebooks of a trained codec: the tokens to keep come from it",
                               "add train.init_from=cadenza/weights/codec (or another codec folder), with encoder and quantizer in train.init_parts")
        if t.get("init_from"):
            init_codec_from(self.net, t["init_from"], loaded_parts(t))
        if self.freeze_tokens:
            self.net.encoder.requires_grad_(False)
            self.net.quantizer.requires_grad_(False)
        voc = vocoder_section(config)
        self.mel = MelSpectrogram(MelConfig.from_dict(config.get("mel", {})))
        loss = config.get("loss", {})
        self.adversarial = float(loss.get("adv_weight", 0.0)) > 0 and config["train"].get("wave_start") is not None
        if self.adversarial:
            self.mpd, self.mrd = build_discriminators(config.get("discriminator", {}))
        self.mrstft = MultiResolutionSTFTLoss(loss.get("mrstft_resolutions", ((512, 128), (1024, 256), (2048, 512))))
        self.register_buffer("step_count", torch.zeros((), dtype=torch.long))
        self._vocoder_name = str(voc["path"])
        self.last_log: dict[str, float] = {}

    @property
    def vocoder(self) -> Vocoder:
        """The frozen vocoder, loaded on first use and kept out of the state dict (the codec folder names it)."""
        voc = self.__dict__.get("_vocoder")
        if voc is None:
            voc = load_vocoder(self._vocoder_name, precision="fp32")
            self.__dict__["_vocoder"] = voc
        return voc

    _lr_at = VocoderModule._lr_at  # linear warm-up then cosine decay, the vocoder's schedule

    def configure_optimizers(self):
        t = self.config["train"]
        betas = tuple(t.get("betas", (0.8, 0.99)))
        params = self.net.decoder.parameters() if self.freeze_tokens else self.net.parameters()
        opts = [torch.optim.AdamW(params, lr=t["lr"], betas=betas, weight_decay=t.get("weight_decay", 0.0))]
        if self.adversarial:
            disc = list(self.mpd.parameters()) + list(self.mrd.parameters())
            opts.append(torch.optim.AdamW(disc, lr=t.get("lr_disc", t["lr"]), betas=betas, weight_decay=t.get("weight_decay", 0.0)))
        return opts

    def training_step(self, batch: Tensor, batch_idx: int) -> None:
        t, loss_cfg = self.config["train"], self.config.get("loss", {})
        opts = self.optimizers()
        opts = opts if isinstance(opts, (list, tuple)) else [opts]
        opt_g = opts[0]
        hop = self.net.hop
        wave_start = t.get("wave_start")
        wave = wave_start is not None and int(self.step_count) >= int(wave_start)
        if wave:
            batch = batch[: t.get("wave_batch_size", batch.shape[0]), : t.get("wave_crop_samples", batch.shape[-1])]
        audio = batch[:, : max(batch.shape[-1] // hop, 1) * hop]
        target = self.mel(audio)  # (B, n_mels, 2T + 1)
        if self.freeze_tokens:
            pred, commit = self._decode_frozen_tokens(audio), torch.zeros((), device=audio.device)
        else:
            pred, _, commit = self.net(audio)
        mel_l1 = (pred - target).abs().mean()
        loss_g = loss_cfg.get("mel_weight", 1.0) * mel_l1 + loss_cfg.get("commit_weight", 1.0) * commit
        logs = {"mel_l1": float(mel_l1.detach()), "commit": float(commit.detach())}
        if wave:
            gen = self.vocoder.generator
            log_mag, cos, sin = gen.spectrum(pred)
            fake = gen.synthesize(log_mag, cos, sin, t.get("phase_iters"))
            wave_mel = (self.mel(fake) - target).abs().mean()
            stft_l = self.mrstft(fake, audio)
            loss_g = loss_g + loss_cfg.get("wave_mel_weight", 1.0) * wave_mel + loss_cfg.get("mrstft_weight", 1.0) * stft_l
            logs.update(wave_mel_l1=float(wave_mel.detach()), mrstft=float(stft_l.detach()))
            if self.adversarial:
                opt_d = opts[1]
                w_mrd = loss_cfg.get("mrd_weight", 0.1)
                loss_d = discriminator_step_loss(self.mpd, self.mrd, audio, fake, w_mrd)
                opt_d.zero_grad(set_to_none=True)
                self.manual_backward(loss_d)
                torch.nn.utils.clip_grad_norm_(list(self.mpd.parameters()) + list(self.mrd.parameters()), t.get("grad_clip", 100.0))
                opt_d.step()
                adv, fm = generator_adversarial_losses(self.mpd, self.mrd, audio, fake, w_mrd)
                loss_g = loss_g + loss_cfg.get("adv_weight", 1.0) * adv + loss_cfg.get("fm_weight", 2.0) * fm
                logs.update(loss_d=float(loss_d.detach()), adv=float(adv.detach()), fm=float(fm.detach()))
        for group in opt_g.param_groups:
            group["lr"] = t["lr"] * self._lr_at(int(self.step_count))
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        torch.nn.utils.clip_grad_norm_([p for p in self.net.parameters() if p.requires_grad], t.get("grad_clip", 100.0))
        opt_g.step()
        self.step_count += 1
        logs["loss_g"] = float(loss_g.detach())
        self.last_log = logs


    def _decode_frozen_tokens(self, audio: Tensor) -> Tensor:
        """The frozen encoder's codes (nearest-codebook search, no EMA bookkeeping), one random prefix per clip, decoded."""
        with torch.no_grad():
            codes = self.net.quantize(self.net.latents(audio))
            k = codes.shape[1]
            n_q = torch.randint(1, k + 1, (codes.shape[0],), device=codes.device)
            zq = self.net.dequantize(codes, n_q)
        return self.net.mel(zq)


CODEC_PARTS = ("encoder", "quantizer", "decoder")


def loaded_parts(train: dict) -> list[str]:
    """The codec parts ``train.init_from`` loads (``train.init_parts``, one name or a list; all by default); none without ``init_from``."""
    if not train.get("init_from"):
        return []
    parts = train.get("init_parts") or list(CODEC_PARTS)
    return [parts] if isinstance(parts, str) else list(parts)


def init_codec_from(net: torch.nn.Module, folder: str | os.PathLike, parts: list[str] | tuple[str, ...]) -> None:
    """Load the named parts of a trained codec folder's weights into ``net`` (``train.init_from`` / ``train.init_parts``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    unknown = set(parts) - set(CODEC_PARTS)
    if unknown or not parts:
        raise CadenzaError(f"train.init_parts: {', '.join(sorted(unknown)) or 'empty'} is not a codec part", f"choose from {', '.join(CODEC_PARTS)}")
    path = resolve_codec_dir(folder) / WEIGHTS_NAME
    try:
        weights = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise CadenzaError(f"train.init_from: cannot read {path} ({str(exc).splitlines()[0]})",
                           "pass a codec folder written by cadenza train codec, e.g. cadenza/weights/codec") from None
    own = net.state_dict()
    chosen = {k: v for k, v in weights.items() if k.split(".", 1)[0] in parts}
    missing = [k for k in own if k.split(".", 1)[0] in parts and k not in chosen]
    wrong = [k for k, v in chosen.items() if k not in own or own[k].shape != v.shape]
    if missing or wrong:
        raise CadenzaError(f"train.init_from: {folder}'s {'/'.join(parts)} do not fit this config ({len(missing)} missing, {len(wrong)} of another shape, e.g. {(missing + wrong)[0]})",
                           "use the codec's own model sizes for the parts you load (its config.json 'model'), or load fewer parts (train.init_parts)")
    net.load_state_dict(chosen, strict=False)


@torch.no_grad()
def codec_mel_l1(net: torch.nn.Module, vocoder: Vocoder, audio: Tensor, mel: MelSpectrogram, n_q: int | None = None) -> tuple[float, float]:
    """(mel L1 of the vocoder-rendered resynthesis, mel L1 of the decoded mel itself) on (B, N) crops."""
    target = mel(audio)
    decoded = net.mel(net.dequantize(net.quantize(net.latents(audio), n_q)))
    frames = min(decoded.shape[-1], target.shape[-1])
    direct = float((decoded[..., :frames] - target[..., :frames]).abs().mean())
    out = mel(vocoder.decode(decoded)[..., : audio.shape[-1]])
    frames = min(out.shape[-1], target.shape[-1])
    return float((out[..., :frames] - target[..., :frames]).abs().mean()), direct


@register_task("codec")
class CodecTask(VocoderTask):
    """RVQ neural codec, mel-domain (+ optional end-to-end wave) losses (``cadenza.train.codec.CodecModule``).

    The vocoder task's data (random crops of the train split, or synthetic tones), manual-optimisation
    step and held-out crops, with the codec's module, k-means start, validation and export.
    """

    name, config_kind = "codec", "codec"
    defaults = {"data": {"source": "manifest", "synthetic_clips": 4, "synthetic_seconds": 1.0, "val_clips": 12, "val_seconds": 3.0, "init_batches": 8}}

    def build_module(self, config: dict) -> torch.nn.Module:
        return CodecModule(config)

    def prepare(self, module: Any, spec: DataSpec, config: dict) -> None:
        """k-means-initialise the codebooks on ``data.init_batches`` batches at once (one batch has fewer vectors than a codebook)."""
        n = int(config.get("data", {}).get("init_batches", 8))
        if n <= 0 or "quantizer" in loaded_parts(config["train"]):  # loaded codebooks are already initialised
            return
        stream = iter(spec.dataset)
        audio = torch.stack([next(stream) for _ in range(n * spec.batch_size)])
        hop = module.net.hop
        audio = audio[:, : max(audio.shape[-1] // hop, 1) * hop]
        state = torch.get_rng_state()
        with torch.no_grad():
            module.net.quantizer(module.net.latents(audio))  # the first training-mode call runs the k-means
        torch.set_rng_state(state)

    def validate(self, module: Any, config: dict) -> dict[str, float]:
        """Mel L1 of the codec's resynthesis (all and half the codebooks) on the fixed valid crops."""
        m, audio = _inner(module), self.heldout(module, config)
        if audio is None:
            return {}
        m.net.eval()
        full, direct = codec_mel_l1(m.net, m.vocoder, audio, m.mel)
        half, _ = codec_mel_l1(m.net, m.vocoder, audio, m.mel, max(1, m.net.config.codebooks // 2))
        return {"mel_l1": full, "mel_l1_half": half, "decoded_mel_l1": direct}

    def export(self, module: Any, config: dict, progress: Any) -> tuple[dict[str, torch.Tensor], dict]:
        """Only the codec network's weights; the config names the vocoder (path + model id) that renders its mel."""
        net = _inner(module).net
        voc = vocoder_section(config)
        where = resolve_vocoder_dir(voc["path"])
        voc["model_id"] = get_family("vocoder", "vocos-mel").model_id(_inner(module).vocoder.config, where)
        keep = {k: v for k, v in config.items() if k not in ("discriminator",)}
        cfg = {**keep, "model": net.config.to_dict(), "vocoder": voc, "training": {"steps": progress.step}}
        return net.state_dict(), cfg
