"""The two token families in the registry: ``generator/token-lm`` and ``generator/magnet``.

Both build the same ``TokenNet`` from the config's ``model`` section; they differ in how it is
trained (``cadenza.train.tokens``) and decoded, so each wraps the loaded network in its own
``Generator`` (``TokenLMGenerator`` / ``MagnetGenerator``), which loads the codec the config
names and checks it fits (``generator.load_codec`` / ``check_codec``).
"""

from __future__ import annotations

from cadenza.errors import CadenzaError
from cadenza.generators.tokens.generator import WEIGHTS_ROOT
from cadenza.generators.tokens.lm import TokenLMGenerator
from cadenza.generators.tokens.magnet import MagnetGenerator
from cadenza.generators.tokens.net import TokenModelConfig, TokenNet
from cadenza.registry import register_family


def build_token_net(config: dict) -> TokenNet:
    """A freshly initialised token network from a config (its ``model`` section)."""
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise CadenzaError("token model config has no 'model' section", "use cadenza.config.load_config('lm', 'debug')")
    return TokenNet(TokenModelConfig.from_dict(config["model"]))


@register_family(
    kind="generator", type="token-lm", title="token LM", task="lm", task_module="cadenza.train.tokens", shipped=WEIGHTS_ROOT / "lm",
    wrap=lambda net, config, folder: TokenLMGenerator(net, config, folder),
    about="MusicGen-style autoregressive transformer over RVQ codec tokens (delay pattern, KV cache, text + controls)",
)
def build_token_lm(config: dict) -> TokenNet:
    """The AR token LM's network."""
    return build_token_net(config)


@register_family(
    kind="generator", type="magnet", title="MAGNeT", task="magnet", task_module="cadenza.train.tokens", shipped=WEIGHTS_ROOT / "magnet",
    wrap=lambda net, config, folder: MagnetGenerator(net, config, folder),
    about="MAGNeT masked non-autoregressive decoding over RVQ codec tokens (span masking, level by level, text + controls)",
)
def build_magnet(config: dict) -> TokenNet:
    """MAGNeT's network (the same transformer, run bidirectionally)."""
    return build_token_net(config)
