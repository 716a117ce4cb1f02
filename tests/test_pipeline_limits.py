"""The Python API's bad arguments (issue 20): a ``CadenzaError`` naming the argument, never a bare TypeError/ValueError."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cadenza.errors import CadenzaError


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    from cadenza.checkpoint import save_model_folder
    from cadenza.config import load_config
    from cadenza.generators import build_generator
    from cadenza.pipeline import Cadenza

    cfg = load_config("generator", "debug")
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("limits_model")
    save_model_folder(folder, build_generator(cfg).state_dict(), cfg)
    return Cadenza.load(folder)


AUDIO = np.zeros(22050, np.float32)

GENERATE = [
    ({"duration": "abc"}, "duration: 'abc' is not a number"),
    ({"duration": 1e9}, "duration: 1e+09 s is out of range"),
    ({"duration": float("nan")}, "duration: nan is not a finite number"),
    ({"seed": "abc"}, "seed: 'abc' is not a number"),
    ({"seed": "None"}, "seed: 'None' is not a number"),
    ({"seed": 2**64 + 5}, "seed: 18446744073709551621 is out of range"),
    ({"seed": -3}, "seed: -3 is out of range"),
    ({"seed": [0, "x"]}, "seed[1]: 'x' is not a number"),
    ({"seed": []}, "no seeds given"),
    ({"steps": "abc"}, "steps: 'abc' is not a number"),
    ({"steps": 10**6}, "steps: 1000000 is out of range"),
    ({"cfg": "x"}, "cfg: 'x' is not a number"),
    ({"cfg": float("inf")}, "cfg: inf is not a finite number"),
    ({"melody": np.array([object()] * 87, dtype=object)}, "melody control: an array of object is not numbers"),
    ({"melody": ["a"] * 87}, "melody control: an array of <U1 is not numbers"),
    ({"dynamics": np.full(87, 1e16)}, "dynamics out of range"),
    ({"sampler": 5}, "unknown sampler"),
]


@pytest.mark.parametrize("kwargs,needle", GENERATE, ids=[n for _, n in GENERATE])
def test_generate_refuses_bad_arguments_by_name(gen, kwargs, needle) -> None:
    kwargs = {"duration": 1.0, "steps": 1, **kwargs}
    with pytest.raises(CadenzaError) as info:
        gen.generate("x", **kwargs)
    assert needle in info.value.message, info.value.message
    assert info.value.hint


@pytest.mark.parametrize("sr,needle", [(1e12, "1e+12 is out of range"), ("abc", "'abc' is not a number"), (22050.5, "22050.5 is not a whole number"), (0, "0 is out of range")])
def test_sample_rates_are_checked_everywhere(gen, sr, needle) -> None:
    for call in (
        lambda: gen.extract_controls(AUDIO, sr),
        lambda: gen.continue_audio(AUDIO, "x", sample_rate=sr, steps=1),
        lambda: gen.inpaint(AUDIO, 0.1, 0.5, "x", sample_rate=sr, steps=1),
        lambda: gen.evaluate(AUDIO, sr, bpm=120),
    ):
        with pytest.raises(CadenzaError, match="sample_rate: " + needle.replace("+", r"\+")):
            call()


def test_continue_and_inpaint_check_seed_and_span(gen) -> None:
    with pytest.raises(CadenzaError, match="seed: 'abc' is not a number"):
        gen.continue_audio(AUDIO, "x", duration=1.5, seed="abc", steps=1)
    with pytest.raises(CadenzaError, match="start: 'a' is not a number"):
        gen.inpaint(AUDIO, "a", 0.5, "x", steps=1)
    with pytest.raises(CadenzaError, match="audio: expected real-valued samples"):
        gen.extract_controls(np.array(["a", "b"]))


def test_good_arguments_in_other_types_still_work(gen) -> None:
    wave, sr = gen.generate("x", duration="0.5", seed="3", steps=1.0, cfg="2")
    assert sr == 22050 and wave.shape == (int(round(0.5 * sr)),) and gen.last_info["seed"] == 3
