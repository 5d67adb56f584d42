"""Keeping a model: state dicts, fastgrad.save / fastgrad.load, pickle and copy.deepcopy of
Values and Modules, all round-tripping exactly; damaged or mismatched files refused with the
module untouched."""

from __future__ import annotations

import copy
import json
import math
import pickle
import random
import types
from pathlib import Path
from typing import Any

import pytest
from programs import bits

import fastgrad
from fastgrad import nn

SPECIAL = [-0.0, 5e-324, 1e-310, math.inf, -math.inf, math.nan, 0.1, -1e308]


def model(impl: types.ModuleType, seed: int = 4, nouts: list[int] | None = None) -> nn.MLP:
    random.seed(seed)
    m = nn.MLP(3, nouts or [4, 2], engine=impl)
    for p, x in zip(m.parameters(), SPECIAL):
        p.data = x
    m([1.0, -2.0, 0.5])[0].backward()
    return m


def fingerprint(m: nn.Module) -> list[tuple[str, bytes, bytes]]:
    return [(name, bits(p.data), bits(p.grad)) for name, p in m.named_parameters()]


def test_state_dict_names_and_exact_values(impl: types.ModuleType) -> None:
    m = model(impl)
    state = m.state_dict()
    assert list(state)[:3] == ["layers.0.neurons.0.w.0", "layers.0.neurons.0.w.1",
                               "layers.0.neurons.0.w.2"]  # fmt: skip
    assert "layers.1.neurons.1.b" in state and len(state) == len(m.parameters()) == 4 * 4 + 2 * 5
    other = model(impl, seed=9)
    other.load_state_dict(state)
    assert [bits(p.data) for p in other.parameters()] == [bits(p.data) for p in m.parameters()]


def test_bad_state_dicts_change_nothing(impl: types.ModuleType) -> None:
    m = model(impl)
    before = fingerprint(m)
    good = m.state_dict()
    for bad, error, match in [
        ({k: v for k, v in good.items() if k != "layers.0.neurons.0.b"}, KeyError, "missing"),
        ({**good, "layers.9.w": 1.0}, KeyError, "unexpected"),
        ({**good, "layers.1.neurons.1.b": "nope"}, TypeError, "real number"),
    ]:
        with pytest.raises(error, match=match):
            m.load_state_dict(bad)
        assert fingerprint(m) == before


def test_save_and_load_round_trip(impl: types.ModuleType, tmp_path: Path) -> None:
    m = model(impl)
    path = tmp_path / "model.json"
    fastgrad.save(m, path)
    loaded = fastgrad.load(path, engine=impl)
    assert repr(loaded) == repr(m) and type(loaded.parameters()[0]) is impl.Value
    assert [bits(p.data) for p in loaded.parameters()] == [bits(p.data) for p in m.parameters()]
    assert json.loads(path.read_text())["format"] == "fastgrad-module"
    into = model(impl, seed=1)
    assert fastgrad.load(path, into) is into
    assert [bits(p.data) for p in into.parameters()] == [bits(p.data) for p in m.parameters()]
    for single in (nn.Layer(2, 3, nonlin=False, engine=impl), nn.Neuron(4, engine=impl)):
        fastgrad.save(single, path)
        assert repr(fastgrad.load(path, engine=impl)) == repr(single)


def test_damaged_or_mismatched_files_change_nothing(impl: types.ModuleType,
                                                   tmp_path: Path) -> None:
    m = model(impl)
    good = tmp_path / "good.json"
    fastgrad.save(m, good)
    text = good.read_text()
    target = model(impl, seed=7)
    before = fingerprint(target)
    document = json.loads(text)
    edited = text.replace(repr(document["state"]["layers.0.neurons.0.w.0"]), "0.25", 1)
    smaller = tmp_path / "smaller.json"
    fastgrad.save(model(impl, nouts=[3, 2]), smaller)
    cases = {
        "truncated": (text[: len(text) // 2], "not JSON"),
        "edited": (edited, "edited or damaged"),
        "not ours": (json.dumps({"weights": [1, 2]}), "not a fastgrad module file"),
        "a pickle": (pickle.dumps(m).decode("latin-1"), "not a fastgrad module file"),
        "a newer version": (text.replace('"version": 1', '"version": 2'), "version 2"),
        "another shape": (smaller.read_text(), "does not fit"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(content, encoding="latin-1")
        with pytest.raises(ValueError, match=message):
            fastgrad.load(path, target)
        assert fingerprint(target) == before, name


def test_pickle_and_deepcopy_of_a_graph_round_trip(impl: types.ModuleType) -> None:
    x, y = impl.Value(2.0, label="x"), impl.Value(-0.0, label="y")
    z = impl.dot([x, y, 2.0], [y, x, x], x) * x.log() + y**2 - impl.Value(5.0, (x, y), "own")
    z = z.tanh() / (x + 1e-310)
    z.label = "z"
    z.backward()
    for duplicate in (lambda v: pickle.loads(pickle.dumps(v)), copy.deepcopy):
        copied = duplicate(z)
        assert type(copied) is impl.Value and copied is not z
        assert bits(copied.data) == bits(z.data) and copied.label == "z"
        assert snapshot(copied) == snapshot(z)
        for v in (copied, z):
            v.backward()
        assert snapshot(copied) == snapshot(z)  # the same graph: backward agrees again


def snapshot(root: Any) -> list[tuple[Any, ...]]:
    """Every value below root, in a stable order: op, label, data and grad bits. The handles
    are kept while walking: an intermediate node's handle may be new each time _prev is
    asked, and a dropped one's id could come back for another."""
    out, stack, seen, kept = [], [root], {id(root)}, [root]
    while stack:
        v = stack.pop()
        out.append((v._op, v.label, bits(v.data), bits(v.grad), len(v._prev)))
        for child in v._prev:
            kept.append(child)
            if id(child) not in seen:
                seen.add(id(child))
                stack.append(child)
    return sorted(out)


def test_a_deep_graph_pickles_without_recursion(impl: types.ModuleType) -> None:
    x = impl.Value(1.0)
    y = x
    for _ in range(100_000):
        y = y * 1.000001
    copied = pickle.loads(pickle.dumps(y))
    assert bits(copied.data) == bits(y.data)
    copied.backward()
    y.backward()
    leaf = copied  # down the chain: the product below, and at the bottom x (1.0, not 1.000001)
    while leaf._prev:
        leaf = max(leaf._prev, key=lambda c: (bool(c._op), c.data == 1.0))
    assert leaf.data == 1.0 and bits(leaf.grad) == bits(x.grad)


def test_pickle_and_deepcopy_of_a_module(impl: types.ModuleType) -> None:
    m = model(impl)
    for copied in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert repr(copied) == repr(m) and fingerprint(copied) == fingerprint(m)
        assert copied.layers[0].neurons[0].engine is impl
        out = copied([1.0, 2.0, 3.0])
        assert [bits(v.data) for v in out] == [bits(v.data) for v in m([1.0, 2.0, 3.0])]


def test_damaged_pickles_are_refused(impl: types.ModuleType) -> None:
    x = impl.Value(1.0)
    rebuild, (records,) = (x * 2.0).__reduce__()
    with pytest.raises(ValueError, match="not before it"):
        rebuild([("", 1.0, 0.0, "", (), 0.0, False, ""),
                 ("*", 2.0, 0.0, "", (0, 5), 0.0, False, "")])
    with pytest.raises(ValueError, match="does not take 1 operands"):
        rebuild([("", 1.0, 0.0, "", (), 0.0, False, ""),
                 ("*", 2.0, 0.0, "", (0,), 0.0, False, "")])
    with pytest.raises(ValueError, match="unknown op"):
        rebuild([("cosh", 1.0, 0.0, "", (), 0.0, False, "")])
    with pytest.raises(ValueError, match="no records"):
        rebuild([])
    assert bits(rebuild(records).data) == bits(2.0)


def _resigned(path: Path, edit: Any, target: Path) -> Path:
    """The file at path with an edit and a checksum written anew, as a tamperer writes it
    (the checksum detects damage, not tampering: the checks behind it must hold alone)."""
    from fastgrad._files import _digest

    document = json.loads(path.read_text())
    document.pop("sha256")
    edit(document)
    document["sha256"] = _digest(document)
    target.write_text(json.dumps(document))
    return target


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["module"].update(nin=10**9), "declares 3000000007 parameters but its state"),
    (lambda d: d["module"].update(nin=1e400), "nin must be a whole number"),
    (lambda d: d["module"].update(nin=2.9), "nin must be a whole number"),
    (lambda d: d["module"].update(nin=True), "nin must be a whole number"),
    (lambda d: d["module"].update(nouts="31"), "nouts must be a list of layer sizes"),
    (lambda d: d["module"].update(nouts=[3, 0]), "a layer size must be a whole number"),
    (lambda d: d["module"].update(activation="gelu"), "activation 'gelu' is not one of"),
    (lambda d: d.update(version=True), "format version True"),
    (lambda d: d["state"].update({"layers.0.neurons.0.w.0": "1.5"}), "not a number"),
    (lambda d: d["state"].update({"layers.0.neurons.0.w.0": None}), "not a number"),
])  # fmt: skip
def test_a_resigned_hostile_file_is_refused_before_building(tmp_path: Path, edit: Any,
                                                            message: str) -> None:  # fmt: skip
    """A declared size is checked against the stored state before anything is built (a
    727-byte file claiming nin=1e9 ran out of memory), types exactly (2.9 inputs, "31" as two
    layers, true as version 1), and only ValueError comes out."""
    path = tmp_path / "m.json"
    fastgrad.save(nn.MLP(2, [3, 1]), path)
    with pytest.raises(ValueError, match=message):
        fastgrad.load(_resigned(path, edit, tmp_path / "hostile.json"))


def test_endless_and_special_files_are_not_read(tmp_path: Path) -> None:
    """/dev/zero was read until MemoryError; a directory or a file beyond the size bound is
    refused before it is read."""
    import fastgrad._files as files

    with pytest.raises(ValueError, match="not a regular file"):
        fastgrad.load("/dev/zero")
    with pytest.raises(ValueError, match="a directory"):
        fastgrad.load(tmp_path)
    big = tmp_path / "big.json"
    big.write_text(" " * 2048)
    bound = files.MAX_BYTES
    files.MAX_BYTES = 1024
    try:
        with pytest.raises(ValueError, match="larger than a fastgrad module file may be"):
            fastgrad.load(big)
    finally:
        files.MAX_BYTES = bound


def test_a_mismatch_names_the_activations(impl: types.ModuleType, tmp_path: Path) -> None:
    fastgrad.save(nn.MLP(2, [3, 1], engine=impl), tmp_path / "relu.json")
    tanh = nn.MLP(2, [3, 1], activation="tanh", engine=impl)
    with pytest.raises(ValueError, match=r"'activation': 'relu'.*fit.*'activation': 'tanh'"):
        fastgrad.load(tmp_path / "relu.json", tanh)
