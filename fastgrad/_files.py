"""fastgrad.save and fastgrad.load: a trained module in a file that cannot run code on load.

The file is JSON: the module's architecture, its state_dict (floats written as repr writes
them, so they come back exactly: -0.0, 1e-310, nan and inf included) and a SHA-256 of all of
it, so that a truncated or damaged file is refused instead of loaded wrong. The checksum
detects damage, not tampering: anyone who edits a file can write its new checksum. Loading
reads JSON only, never runs code, checks the declared architecture against the stored state
before it builds anything and everything before it changes anything, so a hostile file gets
ValueError; pickle, by contrast, is for data you trust.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import stat
import tempfile
import types
from pathlib import Path
from typing import Any, TypeVar, overload

from . import nn

FORMAT = "fastgrad-module"
VERSION = 1

__all__ = ["load", "save"]


def _describe(module: nn.Module) -> dict[str, Any]:
    """What it takes to build the module again: nn's own modules are described in full (the
    activation only where it is not micrograd's ReLU, so older files still fit)."""
    if isinstance(module, nn.MLP) and module.layers:
        description = {"type": "MLP", "nin": len(module.layers[0].neurons[0].w),
                       "nouts": [len(layer.neurons) for layer in module.layers]}  # fmt: skip
        hidden = module.layers[0].neurons[0] if len(module.layers) > 1 else None
        if hidden is not None and hidden.activation != "relu":
            description["activation"] = hidden.activation
        return description
    if isinstance(module, nn.Layer) and module.neurons:
        first = module.neurons[0]
        return _with_activation({"type": "Layer", "nin": len(first.w),
                                 "nout": len(module.neurons), "nonlin": first.nonlin}, first)
    if isinstance(module, nn.Neuron):
        return _with_activation({"type": "Neuron", "nin": len(module.w),
                                 "nonlin": module.nonlin}, module)  # fmt: skip
    return {"type": f"{type(module).__module__}.{type(module).__qualname__}"}


def _with_activation(description: dict[str, Any], neuron: nn.Neuron) -> dict[str, Any]:
    """nonlin=False says linear; other activations but ReLU are named."""
    if neuron.activation not in ("relu", "linear"):
        description["activation"] = neuron.activation
    return description


def _count(description: dict[str, Any], key: str) -> int:
    """A size in the description: an int (not a bool, not 2.9, not "31") of at least 1."""
    value = description.get(key)
    if type(value) is not int or value < 1:
        raise ValueError(f"the file's module description is damaged: {key} must be a whole "
                         f"number of at least 1, not {value!r}")  # fmt: skip
    return value


def _checked(description: dict[str, Any], parameters: int) -> tuple[str, list[int], bool, str]:
    """The kind, the layer sizes (inputs first), nonlin and activation a description of nn's
    own modules declares, checked in type and against the `parameters` the state holds
    before anything is built."""
    kind = description.get("type")
    if kind == "MLP":
        nouts = description.get("nouts")
        if not isinstance(nouts, list) or not nouts:
            raise ValueError(f"the file's module description is damaged: nouts must be a "
                             f"list of layer sizes, not {nouts!r}")  # fmt: skip
        sizes = [_count(description, "nin"),
                 *(_count({"a layer size": n}, "a layer size") for n in nouts)]
        nonlin = True
    elif kind in ("Layer", "Neuron"):
        sizes = [_count(description, "nin"), _count(description, "nout") if kind == "Layer" else 1]
        nonlin = description.get("nonlin")  # type: ignore[assignment]
        if type(nonlin) is not bool:
            raise ValueError(f"the file's module description is damaged: nonlin must be true "
                             f"or false, not {nonlin!r}")  # fmt: skip
    else:
        raise ValueError(f"the file holds a {kind}, which only load(path, module) can fill: "
                         "pass a module of that kind to load it into")  # fmt: skip
    activation = description.get("activation", "relu")
    if activation not in nn.ACTIVATIONS:
        raise ValueError(f"the file's module description is damaged: activation "
                         f"{activation!r} is not one of {', '.join(nn.ACTIVATIONS)}")
    declared = sum((n_in + 1) * n_out for n_in, n_out in itertools.pairwise(sizes))
    if declared != parameters:
        raise ValueError(f"the file's module description declares {declared} parameters but "
                         f"its state holds {parameters}")  # fmt: skip
    return kind, sizes, nonlin, activation


def _build(description: dict[str, Any], parameters: int,
           engine: types.ModuleType | None) -> nn.Module:  # fmt: skip
    kind, sizes, nonlin, activation = _checked(description, parameters)
    if kind == "MLP":
        return nn.MLP(sizes[0], sizes[1:], activation=activation, engine=engine)
    if kind == "Layer":
        return nn.Layer(sizes[0], sizes[1], nonlin=nonlin, activation=activation, engine=engine)
    return nn.Neuron(sizes[0], nonlin=nonlin, activation=activation, engine=engine)


def _digest(document: dict[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def save(module: nn.Module, path: str | os.PathLike[str], *, optimizer: Any = None,
         scheduler: Any = None) -> None:
    """Writes module's architecture and parameters to path (JSON), atomically; with
    optimizer and scheduler, their state too (a checkpoint to resume training from).

    The file holds a SHA-256 of its content, so load() refuses a damaged or edited one.

    Args:
        module: an nn.Module (Neuron, Layer, MLP) of either engine.
        path: the file to write; it is replaced whole or not at all.
        optimizer: an optimizer whose state_dict() is saved beside the parameters.
        scheduler: a learning-rate scheduler whose state_dict() is saved too.

    Raises:
        ValueError: a state that cannot be written as JSON.
        OSError: the file cannot be written (the old file, if any, is left as it was).
    """
    document: dict[str, Any] = {"format": FORMAT, "version": VERSION,
                                "module": _describe(module), "state": module.state_dict()}
    for name, part in (("optimizer", optimizer), ("scheduler", scheduler)):
        if part is not None:
            document[name] = {"type": type(part).__name__, "state": part.state_dict()}
    try:  # as it reads back: int keys become strings, tuples lists
        document = json.loads(json.dumps(document))
    except (TypeError, ValueError) as error:
        raise ValueError(f"this state cannot be saved as JSON: {error}") from None
    document["sha256"] = _digest(document)
    target = Path(path)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as f:
            json.dump(document, f, indent=1)
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise


# The largest file load() reads: a module of about ten million parameters with an optimizer's
# state. A bigger (or endless) file is refused before it is read.
MAX_BYTES = 1 << 30


def _text(path: str | os.PathLike[str]) -> str:
    """The file's text: a regular file of at most MAX_BYTES, read no further than that."""
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ValueError(f"{path} is not a fastgrad module file (not a regular file)")
            data = f.read(MAX_BYTES + 1)
    except IsADirectoryError:
        raise ValueError(f"{path} is not a fastgrad module file (a directory)") from None
    if len(data) > MAX_BYTES:
        raise ValueError(f"{path} is larger than a fastgrad module file may be "
                         f"({MAX_BYTES} bytes)")  # fmt: skip
    try:
        return data.decode()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not a fastgrad module file (not JSON: {error})") from None


def _read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked document in path, or ValueError saying what is wrong with the file."""
    try:
        document = json.loads(_text(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not a fastgrad module file (not JSON: {error})") from None
    except RecursionError:  # a hostile file: thousands of nested [ or {
        raise ValueError(f"{path} is not a fastgrad module file (nested too deeply)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{path} is not a fastgrad module file")
    if type(document.get("version")) is not int or document.get("version") != VERSION:
        raise ValueError(f"{path} has format version {document.get('version')!r}; this "
                         f"fastgrad reads version {VERSION}")  # fmt: skip
    stored = document.pop("sha256", None)
    try:
        digest = _digest(document)
    except RecursionError:
        raise ValueError(f"{path} is not a fastgrad module file (nested too deeply)") from None
    if stored != digest:
        raise ValueError(f"{path} was edited or damaged after it was saved (its SHA-256 does "
                         "not match its content)")  # fmt: skip
    return document


def _shown(description: dict[str, Any]) -> str:
    """A description with its activation named, micrograd's ReLU included."""
    if description.get("type") in ("MLP", "Layer", "Neuron") and description.get("nonlin", True):
        description = {**description, "activation": description.get("activation", "relu")}
    return str(description)


M = TypeVar("M", bound=nn.Module)


@overload
def load(path: str | os.PathLike[str], module: None = None,
         engine: types.ModuleType | None = None, *, optimizer: Any = None,
         scheduler: Any = None) -> nn.Module: ...
@overload
def load(path: str | os.PathLike[str], module: M, engine: types.ModuleType | None = None, *,
         optimizer: Any = None, scheduler: Any = None) -> M: ...
def load(path: str | os.PathLike[str], module: nn.Module | None = None,
         engine: types.ModuleType | None = None, *, optimizer: Any = None,
         scheduler: Any = None) -> nn.Module:  # fmt: skip
    """The module saved in path: built anew (on `engine`, by default fastgrad's), or, given
    `module`, loaded into it, which must then have the saved architecture. Given optimizer and
    scheduler (built over that module as for the saved run), their saved state is loaded too.
    A file that does not fit changes nothing.

    Args:
        path: the file save() wrote.
        module: the module to load into (with the saved architecture); None builds one.
        engine: the implementation a built module's Values belong to (fastgrad._core or
            fastgrad.reference); fastgrad's chosen one by default.
        optimizer: an optimizer over the module whose saved state is loaded into it.
        scheduler: a scheduler over that optimizer whose saved state is loaded into it.

    Returns:
        The module: the one given, or a new one.

    Raises:
        ValueError: a file that is not a fastgrad module file, is damaged or edited, is
            larger than MAX_BYTES, holds another architecture, or lacks or mismatches the
            optimizer's or scheduler's state.
        KeyError: parameter names that do not fit the module.
        OSError: the file cannot be read.
    """
    document = _read(path)
    description, state = document.get("module"), document.get("state")
    if not isinstance(description, dict) or not isinstance(state, dict):
        raise ValueError(f"{path} lacks its module description or state")
    for name, value in state.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path}: parameter {name!r} holds {value!r}, not a number")
    parts = []
    for name, part in (("optimizer", optimizer), ("scheduler", scheduler)):
        if part is None:
            continue
        saved = document.get(name)
        if not isinstance(saved, dict) or "state" not in saved:
            raise ValueError(f"{path} holds no {name} state")
        if saved.get("type") != type(part).__name__:
            raise ValueError(f"{path} holds the state of a {saved.get('type')}, not of a "
                             f"{type(part).__name__}")  # fmt: skip
        parts.append((part, saved["state"]))
    if module is None:
        module = _build(description, len(state), engine)
    elif _describe(module) != description:
        raise ValueError(f"{path} holds {_shown(description)}, which does not fit "
                         f"{_shown(_describe(module))}: {module!r}")  # fmt: skip
    # each load_state_dict checks before it changes; a later one failing undoes the earlier
    loaded: list[tuple[Any, Any]] = []
    try:
        for target, target_state in [(module, state), *parts]:
            before = target.state_dict()
            target.load_state_dict(target_state)
            loaded.append((target, before))
    except BaseException:
        for target, before in reversed(loaded):
            target.load_state_dict(before)
        raise
    return module
