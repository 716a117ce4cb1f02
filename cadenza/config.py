"""One config system for every model: JSON files, overridable from the command line.

Configs live in ``cadenza/configs/<kind>/<name>.json`` (shipped with the package) or
anywhere on disk. ``load_config`` reads one, applies ``key.sub=value`` overrides (values are
parsed as JSON where possible, else kept as strings) and returns a plain dict, which is saved
beside every checkpoint so a model can always be rebuilt from its own folder.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

from cadenza.errors import CadenzaError
from cadenza.fsutil import atomic_write_text

CONFIG_ROOT = Path(__file__).parent / "configs"


def available_configs(kind: str) -> list[str]:
    """Names of the shipped configs for a model kind (e.g. 'vocoder', 'generator')."""
    folder = CONFIG_ROOT / kind
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def resolve_config_path(kind: str, name_or_path: str | os.PathLike) -> Path:
    """A shipped config name (``debug``) or a path to a JSON file."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.exists():
        return path
    shipped = CONFIG_ROOT / kind / f"{name_or_path}.json"
    if shipped.exists():
        return shipped
    names = ", ".join(available_configs(kind)) or "(none shipped)"
    raise CadenzaError(f"no {kind} config '{name_or_path}'", f"give a .json path or one of: {names}")


def parse_value(text: str) -> Any:
    """'3' → 3, '1e-4' → 0.0001, 'true' → True, '[1,2]' → [1, 2], 'abc' → 'abc'."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(config: dict, overrides: list[str] | None) -> dict:
    """Apply ``a.b=value`` overrides to a copy of ``config``; unknown keys are an error (typos)."""
    out = copy.deepcopy(config)
    for item in overrides or []:
        if "=" not in item:
            raise CadenzaError(f"override '{item}' is not of the form key=value", "e.g. train.max_steps=1000")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise CadenzaError(f"override '{key}': no section '{part}' in the config")
            node = node[part]
        if parts[-1] not in node:
            raise CadenzaError(f"override '{key}': no such key in the config", f"known keys here: {', '.join(sorted(node))}")
        node[parts[-1]] = _checked_value(key, node[parts[-1]], parse_value(raw))
    return out


_KINDS = ((bool, "true or false"), ((int, float), "a number"), (list, "a JSON list such as [1, 2]"), (dict, "a JSON object"))


def _checked_value(key: str, old: Any, new: Any) -> Any:
    """``new`` if it is the kind of value the config holds at ``key``, else a one-line error.

    Without this, ``train.max_steps=abc`` is stored as the string 'abc' and fails deep inside
    training with a bare ValueError. Keys holding null or a string are not checked (null means
    "unset"; a string such as devices='auto' may become a number), and null is always accepted.
    Numbers are then range-checked by ``cadenza.limits.check_config_value`` (``max_steps=1e30``
    would otherwise train forever).
    """
    from cadenza.limits import check_config_value

    if isinstance(new, float) and not math.isfinite(new):  # JSON's NaN / Infinity: never a setting
        raise CadenzaError(f"override '{key}={new}': not a finite number", f"e.g. {key}={json.dumps(old) if old is not None else 1}")
    if new is None or old is None or isinstance(old, str):
        return new
    for kind, what in _KINDS:
        if isinstance(old, kind):
            if not isinstance(new, kind) or isinstance(new, bool) != isinstance(old, bool):
                raise CadenzaError(f"override '{key}={new}': expected {what}, as in the config ({json.dumps(old)})", f"e.g. {key}={json.dumps(old)}")
            break
    return check_config_value(key, old, new)


def load_config(kind: str, name_or_path: str | os.PathLike, overrides: list[str] | None = None) -> dict:
    """Read a config (shipped name or path) and apply overrides."""
    path = resolve_config_path(kind, name_or_path)
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CadenzaError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    return apply_overrides(config, overrides)


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON via a temp file and ``os.replace`` (never a half-written file)."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
