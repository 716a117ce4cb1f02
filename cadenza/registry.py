"""One registry of model families, one loader for every model folder, one table of training tasks.

Why: every model Cadenza ships or trains is a folder (``model.safetensors`` + ``config.json``,
``cadenza/checkpoint.py``), but each family used to carry its own loader with its own weight
checks, and the training runner's task table imported every family (an import cycle). Here a
family says once, where it is defined, how to build its network from a config and how to wrap
the loaded network for inference::

    @register_family(kind="vocoder", type="vocos-mel", title="vocoder", shipped=WEIGHTS_DIR,
                     wrap=lambda net, config, folder: Vocoder(net, config))
    def build_generator(config: dict) -> VocosGenerator: ...

and ``load_model(folder)`` reads the folder, finds its family from the config's ``kind`` and
``type`` (or, for folders written before those keys existed, from the config's contents),
builds the network, checks that the weights fit it exactly and returns a :class:`LoadedModel`.
Every failure is one ``CadenzaError``: missing, damaged, mismatched or of another kind.

Training tasks register the same way (``@register_task("generator")`` on the task class in
``cadenza/train/generator.py``); the runner looks them up by name and never imports a family.

The registry sits at the bottom of the layers (it imports only ``errors`` and ``checkpoint``).
It finds the built-in families by importing the modules named in ``BUILTIN_FAMILY_MODULES``
(by name, on the first lookup) plus any ``cadenza.families`` entry points of installed
packages; a family defined elsewhere (a test, a plugin) registers simply by being imported.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from cadenza.checkpoint import CONFIG_NAME, WEIGHTS_NAME, load_model_folder, weights_digest
from cadenza.errors import CadenzaError

if TYPE_CHECKING:
    import torch

# Modules that define the built-in families (imported lazily, by name: the registry never
# imports a family statically, so no family can form an import cycle through it).
BUILTIN_FAMILY_MODULES: tuple[str, ...] = (
    "cadenza.generators.model",
    "cadenza.representations.vocoder",
    "cadenza.representations.codec.codec",
    "cadenza.controls.beat_tracker",
    "cadenza.eval.clap",
    "cadenza.eval.instruments",
    "cadenza.generators.tokens.family",
)
ENTRY_POINT_GROUP = "cadenza.families"

Builder = Callable[[dict], "torch.nn.Module"]
Wrapper = Callable[["torch.nn.Module", dict, Path], Any]
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def _as_is(net: Any, config: dict, folder: Path) -> Any:
    return net


@dataclass(frozen=True)
class Family:
    """What the registry knows about one model family (one ``kind`` + ``type`` pair).

    ``build(config)`` returns a fresh network from a config; ``wrap(net, config, folder)``
    turns the loaded eval-mode network into the object users call (a ``Vocoder``, a beat
    tracker); ``recognise(config)`` tells a config written before ``kind``/``type`` existed;
    ``legacy_kinds`` are older values of the ``kind`` key that mean this family.
    """

    kind: str
    type: str
    title: str
    build: Builder
    wrap: Wrapper = _as_is
    recognise: Callable[[dict], bool] | None = None
    shipped: Path | None = None
    legacy_kinds: tuple[str, ...] = ()
    task: str | None = None  # the training task's name, when the family can be trained
    about: str = ""
    default_id: str | None = None
    module: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.type}"

    def stamp(self, config: dict) -> dict:
        """``config`` with this family's ``kind`` and ``type`` first (what every saved folder carries)."""
        rest = {k: v for k, v in config.items() if k not in ("kind", "type")}
        return {"kind": self.kind, "type": self.type, **rest}

    def model_id(self, config: dict, folder: Path) -> str:
        """``model_id@sha256-prefix``: names exactly which weights made an output."""
        return f"{self.model_name(config)}@{weights_digest(folder)}"

    def model_name(self, config: dict) -> str:
        """The id's name part: the config's ``model_id``, else ``cadenza-<kind>[-<name>]``."""
        if config.get("model_id"):
            return str(config["model_id"])
        if self.default_id:
            return self.default_id
        name = str(config.get("name") or "")
        if not name:
            return f"cadenza-{self.kind}"
        if name.startswith("cadenza-"):
            return name
        return f"cadenza-{name}" if name.startswith(f"{self.kind}-") else f"cadenza-{self.kind}-{name}"


@dataclass
class LoadedModel:
    """A model folder loaded through its family: the inference object, its config and folder."""

    model: Any
    config: dict
    folder: Path
    family: Family
    net: Any = None  # the bare network (``model`` may wrap it)
    _id: str | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return self.family.kind

    @property
    def type(self) -> str:
        return self.family.type

    @property
    def model_id(self) -> str:
        if self._id is None:
            self._id = self.family.model_id(self.config, self.folder)
        return self._id


_FAMILIES: dict[str, Family] = {}
_TASKS: dict[str, Any] = {}
_TASK_MODULES: dict[str, str] = {}
_lock = threading.RLock()
_discovered = False


def register_family(
    *,
    kind: str,
    type: str,
    title: str | None = None,
    wrap: Wrapper | None = None,
    recognise: Callable[[dict], bool] | None = None,
    shipped: str | os.PathLike | None = None,
    legacy_kinds: tuple[str, ...] = (),
    task: str | None = None,
    task_module: str | None = None,
    about: str = "",
    default_id: str | None = None,
) -> Callable[[F], F]:
    """Decorator on a family's builder (``config -> nn.Module``): registers the family.

    ``task_module`` names (as a string, so nothing is imported now) the module whose
    ``@register_task`` defines the family's training task ``task``. Registering the same
    ``kind``/``type`` again replaces the entry (a reloaded module, a test's toy family).
    """

    def deco(build: F) -> F:
        fam = Family(
            kind=kind, type=type, title=title or kind, build=build, wrap=wrap or _as_is, recognise=recognise,
            shipped=Path(shipped) if shipped is not None else None, legacy_kinds=tuple(legacy_kinds), task=task,
            about=about or ((build.__doc__ or "").strip().splitlines() or [""])[0],
            default_id=default_id, module=getattr(build, "__module__", ""),
        )
        with _lock:
            _FAMILIES[fam.key] = fam
            if task and task_module:
                _TASK_MODULES[task] = task_module
        return build

    return deco


def unregister_family(kind: str, type: str) -> None:
    """Drop a family (tests that register a toy family clean up with this)."""
    with _lock:
        _FAMILIES.pop(f"{kind}/{type}", None)


def register_task(name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: an instance of the task class becomes the training task ``name``."""

    def deco(cls: type[T]) -> type[T]:
        with _lock:
            _TASKS[name] = cls()
        return cls

    return deco


def discover() -> None:
    """Import the built-in family modules and entry-point plugins once (idempotent, thread-safe)."""
    global _discovered
    if _discovered:
        return
    with _lock:
        if _discovered:
            return
        for name in BUILTIN_FAMILY_MODULES:
            importlib.import_module(name)
        try:
            points = metadata.entry_points(group=ENTRY_POINT_GROUP)
        except Exception:  # a broken distribution's metadata must not stop Cadenza itself
            points = ()
        for point in points:
            try:
                point.load()
            except Exception as exc:
                raise CadenzaError(f"model family plugin '{point.name}' ({point.value}) failed to import: {exc}", "fix or uninstall that package") from None
        _discovered = True


def families() -> list[Family]:
    """Every registered family, in registration order (built-ins first)."""
    discover()
    return list(_FAMILIES.values())


def get_family(kind: str, type: str | None = None) -> Family:
    """The family ``kind``/``type`` (``type`` may be left out when the kind has only one).

    An exact ``kind``/``type`` that is registered already (its module is imported: the caller's
    own family) is answered without importing the other families: loading the generator does
    not pay for importing the beat tracker and CLAP modules.
    """
    if type is not None and f"{kind}/{type}" in _FAMILIES:
        return _FAMILIES[f"{kind}/{type}"]
    discover()
    if type is not None and f"{kind}/{type}" in _FAMILIES:
        return _FAMILIES[f"{kind}/{type}"]
    of_kind = [f for f in _FAMILIES.values() if f.kind == kind or kind in f.legacy_kinds]
    if type is None and len(of_kind) == 1:
        return of_kind[0]
    if not of_kind:
        kinds = sorted({f.kind for f in _FAMILIES.values()})
        raise CadenzaError(f"unknown model kind '{kind}'", f"known kinds: {', '.join(kinds)} (see 'cadenza models')")
    types = ", ".join(f.type for f in of_kind)
    if type is None:
        raise CadenzaError(f"model kind '{kind}' has several types ({types}) and the config names none", "add a 'type' key to config.json")
    raise CadenzaError(f"unknown type '{type}' for model kind '{kind}'", f"known types: {types} (see 'cadenza models')")


def family_of(config: dict, folder: str | os.PathLike | None = None) -> Family:
    """The family a model config belongs to: by its ``kind``/``type``, else by its contents.

    Folders written before ``kind``/``type`` existed (users' old run folders) are recognised
    by each family's ``recognise`` rule; exactly one must match.
    """
    where = f"{folder}: " if folder is not None else ""
    if not isinstance(config, dict):
        raise CadenzaError(f"{where}config.json is not a JSON object", "the folder is damaged; re-export it")
    kind, type_ = config.get("kind"), config.get("type")
    if kind is not None:
        if not isinstance(kind, str) or (type_ is not None and not isinstance(type_, str)):
            raise CadenzaError(f"{where}config.json 'kind'/'type' must be strings", "the folder is damaged; re-export it")
        try:
            return get_family(kind, type_)
        except CadenzaError as err:
            raise CadenzaError(f"{where}{err.message}", err.hint) from None
    discover()
    matches = [f for f in _FAMILIES.values() if f.recognise is not None and _safe(f.recognise, config)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise CadenzaError(f"{where}config.json names no 'kind' and matches no known model family", "add 'kind' and 'type' keys (see 'cadenza models')")
    raise CadenzaError(
        f"{where}config.json names no 'kind' and could be any of {', '.join(f.key for f in matches)}",
        "add 'kind' and 'type' keys to config.json",
    )


def _safe(rule: Callable[[dict], bool], config: dict) -> bool:
    try:
        return bool(rule(config))
    except Exception:
        return False


def _expect(family: Family, kind: str | None, folder: Path) -> None:
    """A folder of another kind than the caller asked for is one clear error."""
    if kind is None or family.kind == kind:
        return
    wanted = _first_of_kind(kind)
    raise CadenzaError(
        f"{folder}: not a {wanted.title} model folder (kind={family.kind!r}, type={family.type!r})",
        f"pass a {wanted.title} model folder; 'cadenza models {folder}' says what this one is",
    )


def read_model_folder(folder: str | os.PathLike, kind: str | None = None) -> tuple[dict[str, "torch.Tensor"], dict, Family]:
    """(state_dict, config, family) of a folder, checked to be of ``kind`` when one is given."""
    folder = Path(folder)
    state, config = load_model_folder(folder)
    if kind is not None and config.get("kind") not in (None, kind) and not _is_legacy_of(config.get("kind"), kind):
        # a kind nobody registered is still "not a <title> folder" to a caller that wanted one kind
        wanted = _first_of_kind(kind)
        raise CadenzaError(f"{folder}: not a {wanted.title} model folder (kind={config.get('kind')!r})", f"pass a {wanted.title} model folder")
    family = family_of(config, folder)
    _expect(family, kind, folder)
    return state, config, family


def _first_of_kind(kind: str) -> Family:
    """The first registered family of ``kind`` (whose title names the kind in errors, e.g. "generator"
    although the kind has several types); ``get_family``'s error when there is none."""
    discover()
    first = next((f for f in _FAMILIES.values() if f.kind == kind), None)
    return first if first is not None else get_family(kind)


def _is_legacy_of(value: Any, kind: str) -> bool:
    discover()
    return any(f.kind == kind and value in f.legacy_kinds for f in _FAMILIES.values())


def instantiate(family: Family, state: dict[str, "torch.Tensor"], config: dict, folder: Path) -> Any:
    """Build ``family``'s network from ``config``, load ``state`` strictly, eval mode, no grads.

    Why one function: a shape mismatch, a missing or an extra tensor is the same damage in
    every family, and each used to word (or miss) it differently.
    """
    try:
        net = family.build(config)
    except CadenzaError as err:
        raise CadenzaError(f"{folder}: {err.message}", err.hint or "the folder is damaged; re-export it") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CadenzaError(f"{folder}: config.json does not describe a {family.title} ({type(exc).__name__}: {exc})", "the folder is damaged; re-export it") from None
    try:
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        missing, unexpected = net.load_state_dict(state, strict=False)
    except (RuntimeError, TypeError, ValueError) as exc:  # shape mismatches arrive as RuntimeError
        first = str(exc).strip().splitlines()[0]
        raise CadenzaError(f"{folder}: weights do not match its config.json ({first})", "the folder is damaged; re-export it") from None
    if missing or unexpected:
        raise CadenzaError(
            f"{folder}: weights do not match the {family.title} (missing {len(missing)}, unexpected {len(unexpected)} tensors)",
            "the folder is damaged or from another model; re-export it",
        )
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def load_model(
    folder: str | os.PathLike,
    kind: str | None = None,
    config_hook: Callable[[dict], dict] | None = None,
) -> LoadedModel:
    """Any model folder → :class:`LoadedModel` (``.model`` is ready for inference).

    ``kind`` makes a folder of another kind an error; ``config_hook`` may rewrite the config
    before the network is built (inference-only options such as the vocoder's refinement
    schedule). Errors: missing or incomplete folder, bad JSON, unreadable or truncated
    weights, unknown or mismatched kind/type, weights that do not fit the config.
    """
    folder = Path(folder)
    state, config, family = read_model_folder(folder, kind)
    if config_hook is not None:
        config = config_hook(config)
    net = instantiate(family, state, config, folder)
    return LoadedModel(family.wrap(net, config, folder), config, folder, family, net)


def save_model(folder: str | os.PathLike, net: "torch.nn.Module", config: dict, kind: str, type: str | None = None) -> Path:
    """Write ``net`` as a model folder whose config names its family (``kind``/``type``)."""
    from cadenza.checkpoint import save_model_folder

    family = get_family(kind, type)
    return save_model_folder(folder, net.state_dict(), family.stamp(config))


@dataclass(frozen=True)
class ShippedModel:
    """A model folder that ships inside the package (``cadenza/weights/<name>``)."""

    family: Family
    folder: Path
    config: dict

    @property
    def model_id(self) -> str:
        return self.family.model_id(self.config, self.folder)

    @property
    def size_bytes(self) -> int:
        return (self.folder / WEIGHTS_NAME).stat().st_size


def shipped_models() -> list[ShippedModel]:
    """The families' shipped folders that are complete (weights + config), without loading weights."""
    out = []
    for fam in families():
        folder = fam.shipped
        if folder is None or not (folder / WEIGHTS_NAME).is_file() or not (folder / CONFIG_NAME).is_file():
            continue
        try:
            config = json.loads((folder / CONFIG_NAME).read_text())
        except json.JSONDecodeError as exc:
            raise CadenzaError(f"{folder / CONFIG_NAME}: invalid JSON ({exc.msg})", "the package is damaged; reinstall cadenza") from None
        out.append(ShippedModel(fam, folder, config))
    return out


# ------------------------------------------------------------------------------------- tasks
def tasks() -> dict[str, Any]:
    """Every training task by name; importing each family's task module on the way."""
    for fam in families():
        if fam.task and fam.task not in _TASKS:
            module = _TASK_MODULES.get(fam.task)
            if module:
                importlib.import_module(module)
    return dict(_TASKS)


def family_for_task(name: str) -> Family | None:
    """The family whose training task is ``name`` (None for a task no family claims)."""
    return next((f for f in families() if f.task == name), None)


def stamp_for_task(name: str, config: dict) -> dict:
    """A model-folder config exported by task ``name``, with its family's ``kind``/``type`` first."""
    family = family_for_task(name)
    return family.stamp(config) if family is not None else config


def get_task(name: str) -> Any:
    """The training task ``name`` (CadenzaError listing the choices otherwise)."""
    if name not in _TASKS:
        module = _TASK_MODULES.get(name)
        if module is None:
            discover()
            module = _TASK_MODULES.get(name)
        if module is not None:
            importlib.import_module(module)
    if name not in _TASKS:
        raise CadenzaError(f"unknown model '{name}'", f"choose one of: {', '.join(tasks())}")
    return _TASKS[name]
