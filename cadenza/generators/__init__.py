"""The generator: a 1-D diffusion UNet over mel spectrograms with a ControlNet adapter for controls."""

from cadenza.generators.controlnet import ControlAdapter, GeneratorConfig, MusicControlNet
from cadenza.generators.diffusion import SAMPLERS, diffusion_loss, make_noise_scheduler, make_sampler, sample
from cadenza.generators.model import WEIGHTS_DIR, build_generator, load_generator, resolve_model_dir
from cadenza.generators.unet import UNet1D, UNetConfig

__all__ = [
    "SAMPLERS", "WEIGHTS_DIR", "ControlAdapter", "GeneratorConfig", "MusicControlNet", "UNet1D", "UNetConfig",
    "build_generator", "diffusion_loss", "load_generator", "make_noise_scheduler", "make_sampler", "resolve_model_dir",
    "sample",
]
