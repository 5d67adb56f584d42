"""fastgrad.nn against micrograd 0.1.0's nn, SGD against the plain update loop, make_moons
against scikit-learn's, and the demo's accuracy; on both implementations."""

from __future__ import annotations

import math
import random
import types
from typing import Any

import micrograd.engine
import micrograd.nn
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastgrad._core
import fastgrad.reference
from fastgrad import datasets, nn, optim
from fastgrad.demos import moons as demo


def twin_models(impl: types.ModuleType, nin: int, nouts: list[int], seed: int) -> tuple[Any, Any]:
    random.seed(seed)
    ours = nn.MLP(nin, nouts, engine=impl)
    random.seed(seed)
    theirs = micrograd.nn.MLP(nin, nouts)
    return ours, theirs


def test_reprs_and_parameters_match_micrograd(impl: types.ModuleType) -> None:
    ours, theirs = twin_models(impl, 3, [4, 4, 1], seed=1)
    assert repr(ours) == repr(theirs)
    assert repr(ours.layers[0].neurons[0]) == "ReLUNeuron(3)"
    assert repr(ours.layers[-1].neurons[0]) == "LinearNeuron(4)"
    assert len(ours.parameters()) == len(theirs.parameters()) == 4 * 4 + 4 * 5 + 5
    assert all(type(p) is impl.Value for p in ours.parameters())


@given(st.integers(0, 2**32 - 1), st.lists(st.floats(-3, 3), min_size=3, max_size=3))
def test_same_seed_same_weights_same_forward_bits(impl: types.ModuleType, seed: int,
                                                  x: list[float]) -> None:
    ours, theirs = twin_models(impl, 3, [8, 8, 2], seed)
    assert [p.data for p in ours.parameters()] == [p.data for p in theirs.parameters()]
    ours_out = ours([impl.Value(v) for v in x])
    theirs_out = theirs([micrograd.engine.Value(v) for v in x])
    # dot is bit for bit micrograd's sum((wi*xi for ...), b); relu gives 0.0 where it gives 0
    assert [v.data for v in ours_out] == [v.data for v in theirs_out]
    assert ours(x)[0].data == theirs(x)[0].data  # numbers as inputs too


def test_gradients_and_training_match_micrograd(impl: types.ModuleType) -> None:
    X, y = demo.moons(seed=3, samples=30)
    ours, theirs = twin_models(impl, 2, [16, 16, 1], seed=3)
    for k in range(20):
        ours_loss, _ = demo.loss(ours, X, y, impl.Value)
        theirs_loss, _ = demo.loss(theirs, X, y, micrograd.engine.Value)
        ours.zero_grad()
        theirs.zero_grad()
        ours_loss.backward()
        theirs_loss.backward()
        assert math.isclose(ours_loss.data, theirs_loss.data, rel_tol=1e-6)
        for p, q in zip(ours.parameters(), theirs.parameters()):
            assert math.isclose(p.grad, q.grad, rel_tol=1e-6, abs_tol=1e-9)
            assert math.isclose(p.data, q.data, rel_tol=1e-6, abs_tol=1e-9)
        rate = 1.0 - 0.9 * k / 20
        for p in ours.parameters():
            p.data -= rate * p.grad
        for q in theirs.parameters():
            q.data -= rate * q.grad


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus", "linear"])
def test_activations(impl: types.ModuleType, activation: str, tmp_path: Any) -> None:
    import fastgrad

    random.seed(3)
    model = nn.MLP(2, [3, 1], activation=activation, engine=impl)
    random.seed(3)
    relu_model = nn.MLP(2, [3, 1], engine=impl)
    # the same initialisation as micrograd's; only the hidden nonlinearity differs
    assert [p.data for p in model.parameters()] == [p.data for p in relu_model.parameters()]
    name = {"tanh": "Tanh", "sigmoid": "Sigmoid", "softplus": "Softplus", "linear": "Linear"}
    assert repr(model.layers[0].neurons[0]) == f"{name[activation]}Neuron(2)"
    assert repr(model.layers[1].neurons[0]) == "LinearNeuron(3)"
    x = [impl.Value(0.3), impl.Value(-1.2)]
    hidden = [impl.dot(n.w, x, n.b) for n in model.layers[0].neurons]
    if activation != "linear":
        hidden = [getattr(h, activation)() for h in hidden]
    last = model.layers[1].neurons[0]
    assert model(x).data == impl.dot(last.w, hidden, last.b).data
    assert nn.Neuron(2, activation=activation, engine=impl)(x).data is not None
    path = tmp_path / "model.json"
    fastgrad.save(model, path)
    loaded = fastgrad.load(path, engine=impl)
    assert repr(loaded) == repr(model) and loaded(x).data == model(x).data


def test_unknown_activation_is_refused(impl: types.ModuleType) -> None:
    with pytest.raises(ValueError, match="activation must be one of 'relu', 'tanh'"):
        nn.MLP(2, [3, 1], activation="gelu", engine=impl)


def test_layer_of_one_neuron_returns_the_value_itself(impl: types.ModuleType) -> None:
    layer = nn.Layer(2, 1, engine=impl)
    assert type(layer([1.0, 2.0])) is impl.Value
    with pytest.raises(ValueError, match="dot\\(\\) of 2 weights and 3 inputs"):
        layer([1.0, 2.0, 3.0])


def test_a_layer_calls_a_neuron_subclass_own_call(impl: types.ModuleType) -> None:
    class Tanh(nn.Neuron):
        def __call__(self, x: Any) -> Any:
            return impl.dot(self.w, x, self.b).tanh()

    layer = nn.Layer(2, 2, engine=impl)
    plain = layer.neurons[0]
    layer.neurons[1] = Tanh(2, engine=impl)
    first, second = layer([1.0, -2.0])
    assert first.data == plain([1.0, -2.0]).data and first._op == "ReLU"
    assert second._op == "tanh"


def test_zero_grad(impl: types.ModuleType) -> None:
    model = nn.MLP(2, [3, 1], engine=impl)
    model([1.0, -1.0]).backward()
    assert any(p.grad != 0.0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0.0 and type(p.grad) is float for p in model.parameters())


@pytest.mark.parametrize(
    "momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.0, 1e-2), (0.5, 1e-3)]
)
def test_sgd_matches_the_plain_update_loop(impl: types.ModuleType, momentum: float,
                                           weight_decay: float) -> None:
    random.seed(7)
    params = [impl.Value(random.uniform(-1, 1)) for _ in range(50)]
    plain = [p.data for p in params]
    velocity = [0.0] * len(params)
    sgd = optim.SGD(params, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    for step in range(5):
        grads = [random.uniform(-1, 1) for _ in params]
        for p, g in zip(params, grads):
            p.grad = g
        sgd.lr = 0.1 / (step + 1)  # schedules change lr between steps
        sgd.step()
        for i, g in enumerate(grads):  # PyTorch's rule, written out
            d = g + weight_decay * plain[i] if weight_decay else g
            if momentum:
                velocity[i] = d if step == 0 else momentum * velocity[i] + d
                d = velocity[i]
            plain[i] = plain[i] - sgd.lr * d
        assert [p.data for p in params] == plain
    sgd.zero_grad()
    assert all(p.grad == 0.0 for p in params)


def test_sgd_is_micrograds_update(impl: types.ModuleType) -> None:
    params = [impl.Value(0.25 * i) for i in range(4)]
    copies = [impl.Value(p.data) for p in params]
    for p, q in zip(params, copies):
        p.grad = q.grad = 0.1 + p.data
    optim.SGD(params, lr=0.37).step()
    for q in copies:
        q.data -= 0.37 * q.grad
    assert [p.data for p in params] == [q.data for q in copies]


def test_sgd_rejects_what_is_not_a_parameter(impl: types.ModuleType) -> None:
    with pytest.raises(TypeError, match="optimizer parameters must be Values, not 'float'"):
        optim.SGD([impl.Value(1.0), 2.0], lr=0.1)
    with pytest.raises(TypeError, match="lr must be a real number"):
        optim.SGD([impl.Value(1.0)], lr="fast")


def test_an_optimizer_updates_in_its_parameters_engine(impl: types.ModuleType) -> None:
    sgd = optim.SGD([impl.Value(1.0)], lr=0.5)
    assert type(sgd._kernels[0]) is impl._Parameters
    other = fastgrad.reference if impl is fastgrad._core else fastgrad._core
    with pytest.raises(TypeError, match="mix the C extension's Values with the pure-Python"):
        optim.SGD([impl.Value(1.0), other.Value(2.0)], lr=0.1)


@pytest.mark.parametrize("samples, noise, seed", [(100, 0.1, 0), (7, None, 3), (64, 0.3, 1337)])
def test_make_moons_is_scikit_learns(samples: int, noise: float | None, seed: int) -> None:
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.make_moons(samples, noise, seed)
    X_ref, y_ref = sklearn_datasets.make_moons(n_samples=samples, noise=noise, random_state=seed)
    assert X.shape == (samples, 2) and y.dtype == y_ref.dtype
    assert np.array_equal(X, X_ref) and np.array_equal(y, y_ref)


def test_make_moons_shape_and_labels() -> None:
    X, y = datasets.make_moons(101, noise=0.05, random_state=2)
    assert X.shape == (101, 2) and sorted(set(y.tolist())) == [0, 1]
    assert (y == 0).sum() == 50
    X2, _ = datasets.make_moons(101, noise=0.05, random_state=np.random.RandomState(2))
    assert np.array_equal(X, X2)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_demo_learns_the_moons(seed: int) -> None:
    from fastgrad import _core

    _, history, _ = demo.train(_core, seed, steps=100)
    assert history[-1][1] >= 0.95


def test_demo_is_the_same_on_both_engines() -> None:
    from fastgrad import _core, reference

    c_history = demo.train(_core, 4, steps=100, stop=3)[1]
    assert c_history == demo.train(reference, 4, steps=100, stop=3)[1]
