"""micrograd's nn.py over fastgrad: Module, Neuron, Layer, MLP.

The same signatures, reprs and initialisation as micrograd (one random.uniform(-1, 1) per
weight, in the same order), so that after random.seed(s) both hold the same weights. Written
once over either implementation: `engine` is fastgrad._core or fastgrad.reference, by
default the one fastgrad chose. A neuron is one dot node instead of micrograd's 2 * nin.
"""

from __future__ import annotations

import importlib
import random
import types
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import _implementation
from .._common import as_float

if TYPE_CHECKING:  # both implementations' Values; the C extension's stub describes them
    from .._core import Value

    Input = Value | float

__all__ = ["ACTIVATIONS", "MLP", "Layer", "Module", "Neuron"]


class Module:
    """What every model is (micrograd's nn.Module): parameters(), zero_grad(), and
    PyTorch's named_parameters(), state_dict() and load_state_dict()."""

    def zero_grad(self) -> None:
        """Sets every parameter's grad to 0.0."""
        for p in self.parameters():
            p.grad = 0.0

    def parameters(self) -> list[Value]:
        """The trainable Values, in a fixed order (model.parameters() as micrograd gives it).

        Returns:
            A new list of the Values (none for a bare Module).
        """
        return []

    def named_parameters(self) -> list[tuple[str, Value]]:
        """The parameters with the names state_dict uses, in parameters() order.

        Returns:
            (name, Value) pairs; a bare Module names them "0", "1", ...
        """
        return [(str(i), p) for i, p in enumerate(self.parameters())]

    def state_dict(self) -> dict[str, float]:
        """Every parameter's data by name, as PyTorch's state_dict.

        Returns:
            A new dict from names ("layers.0.neurons.3.w.1" and the like) to floats.
        """
        return {name: p.data for name, p in self.named_parameters()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Sets every parameter's data from state; checks all of it before it changes anything.

        Args:
            state: a mapping that names exactly this module's parameters (state_dict's
                names) with real numbers.

        Raises:
            KeyError: state misses a parameter's name or has one this module lacks.
            TypeError: a value that is not a real number.
        """
        params = dict(self.named_parameters())
        missing = [name for name in params if name not in state]
        unexpected = [name for name in state if name not in params]
        if missing or unexpected:
            raise KeyError(f"the state does not fit {self!r}: missing {_few(missing)}, "
                           f"unexpected {_few(unexpected)}")  # fmt: skip
        values = {name: as_float(state[name], f"state[{name!r}]") for name in params}
        for name, p in params.items():
            p.data = values[name]

    # a module pickles with its engine by name: module objects cannot be pickled
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if isinstance(state.get("engine"), types.ModuleType):
            state["engine"] = state["engine"].__name__
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("engine"), str):
            state["engine"] = importlib.import_module(state["engine"])
        self.__dict__.update(state)


def _few(names: list[str]) -> str:
    return repr(names[:5])[:-1] + (", ...]" if len(names) > 5 else "]")


# each activation, by the name Neuron takes, and the name its repr shows
_REPR_NAMES = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "softplus": "Softplus",
               "linear": "Linear"}  # fmt: skip
ACTIVATIONS = tuple(_REPR_NAMES)


def _activation(nonlin: bool, activation: str) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}, "
                         f"not {activation!r}")  # fmt: skip
    return activation if nonlin else "linear"


def _activate(act: Any, activation: str) -> Any:
    if activation == "relu":
        return act.relu()
    return act if activation == "linear" else getattr(act, activation)()


class Neuron(Module):
    """One unit: activation(w . x + b). nonlin=False is micrograd's linear neuron; activation
    names the nonlinearity otherwise.

    Args:
        nin: the number of inputs; each weight starts uniform in [-1, 1], the bias at 0.
        nonlin: False makes micrograd's linear neuron, whatever activation says.
        activation: "relu" (micrograd's), "tanh", "sigmoid", "softplus" or "linear" (the
            smooth ones for networks whose second derivatives matter).
        engine: the implementation whose Values it holds (fastgrad._core or
            fastgrad.reference); fastgrad's chosen one by default.

    Raises:
        ValueError: an activation not in ACTIVATIONS.
    """

    def __init__(self, nin: int, nonlin: bool = True, *, activation: str = "relu",
                 engine: types.ModuleType | None = None) -> None:  # fmt: skip
        self.activation = _activation(nonlin, activation)
        self.engine = engine or _implementation
        self.w = [self.engine.Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = self.engine.Value(0)
        self.nonlin = self.activation != "linear"

    def __call__(self, x: Sequence[Input]) -> Value:
        """The activation of w . x + b, built as one dot node.

        Args:
            x: the inputs, Values or numbers, nin of them.

        Returns:
            The neuron's output, a Value.
        """
        act = self.engine.dot(self.w, x, self.b)  # micrograd: sum((wi*xi ...), self.b)
        out: Value = _activate(act, self.activation)
        return out

    def parameters(self) -> list[Value]:
        """The trainable Values, in a fixed order (model.parameters() as micrograd gives it).

        Returns:
            A new list: the weights, then the bias.
        """
        return self.w + [self.b]

    def named_parameters(self) -> list[tuple[str, Value]]:
        """(name, Value) for every parameter, in parameters()' order, as PyTorch names them.

        Returns:
            ("w.0", w0), ("w.1", w1), ..., ("b", b).
        """
        return [(f"w.{i}", w) for i, w in enumerate(self.w)] + [("b", self.b)]

    def __repr__(self) -> str:
        return f"{_REPR_NAMES[self.activation]}Neuron({len(self.w)})"

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("activation", "relu" if state.get("nonlin", True) else "linear")
        super().__setstate__(state)


class Layer(Module):
    """nout neurons over the same nin inputs (micrograd's Layer).

    Args:
        nin: the number of inputs.
        nout: the number of neurons.
        **kwargs: passed to each Neuron: nonlin, activation, engine.

    Raises:
        ValueError: an activation not in ACTIVATIONS.
    """

    def __init__(self, nin: int, nout: int, **kwargs: Any) -> None:
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]

    def __call__(self, x: Sequence[Input]) -> Value | list[Value]:
        """The neurons' outputs.

        Args:
            x: the inputs, Values or numbers, nin of them.

        Returns:
            A list of Values, one per neuron; the Value itself for a layer of one neuron.
        """
        out: list[Value] = []
        for n in self.neurons:
            if type(n) is Neuron:  # Neuron.__call__ inlined: its frame is a fifth of the layer
                act = n.engine.dot(n.w, x, n.b)
                a = n.activation
                out.append(act.relu() if a == "relu" else _activate(act, a))
            else:  # a subclass keeps its own __call__
                out.append(n(x))
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        """The trainable Values, in a fixed order (model.parameters() as micrograd gives it).

        Returns:
            A new list: each neuron's parameters in turn.
        """
        return [p for n in self.neurons for p in n.parameters()]

    def named_parameters(self) -> list[tuple[str, Value]]:
        """(name, Value) for every parameter, in parameters()' order, as PyTorch names them.

        Returns:
            ("neurons.0.w.0", ...), one pair per parameter.
        """
        return [(f"neurons.{j}.{name}", p) for j, n in enumerate(self.neurons)
                for name, p in n.named_parameters()]  # fmt: skip

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    """Layers of nouts[i] neurons: activation after every layer but the last, which is
    linear (micrograd's MLP, with "relu").

    Args:
        nin: the number of inputs.
        nouts: each layer's number of neurons, the last layer's being the outputs.
        activation: the hidden layers' nonlinearity, one of ACTIVATIONS.
        engine: the implementation whose Values it holds; fastgrad's chosen one by default.

    Raises:
        ValueError: an activation not in ACTIVATIONS.
    """

    def __init__(self, nin: int, nouts: list[int], *, activation: str = "relu",
                 engine: types.ModuleType | None = None) -> None:  # fmt: skip
        sz = [nin] + nouts
        self.layers = [Layer(sz[i], sz[i + 1], nonlin=i != len(nouts) - 1,
                             activation=activation, engine=engine)
                       for i in range(len(nouts))]  # fmt: skip

    def __call__(self, x: Sequence[Input]) -> Value | list[Value]:
        """The network's outputs.

        Args:
            x: the inputs, Values or numbers, nin of them.

        Returns:
            The last layer's outputs: a list of Values, or one Value where it has one neuron.
        """
        out: Any = x
        for layer in self.layers:
            out = layer(out)
        result: Value | list[Value] = out
        return result

    def parameters(self) -> list[Value]:
        """The trainable Values, in a fixed order (model.parameters() as micrograd gives it).

        Returns:
            A new list: each layer's parameters in turn.
        """
        return [p for layer in self.layers for p in layer.parameters()]

    def named_parameters(self) -> list[tuple[str, Value]]:
        """(name, Value) for every parameter, in parameters()' order, as PyTorch names them.

        Returns:
            ("layers.0.neurons.0.w.0", ...), one pair per parameter.
        """
        return [(f"layers.{i}.{name}", p) for i, layer in enumerate(self.layers)
                for name, p in layer.named_parameters()]  # fmt: skip

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"

from . import utils  # noqa: E402, F401  (fastgrad.nn.utils, as torch.nn.utils)
