"""Optimisers: ``fastgrad.optim.SGD(params, lr, momentum=0.0, weight_decay=0.0)``.

The SGD of the implementation fastgrad chose: a C loop over the parameter nodes with the C
engine, its pure-Python twin with the reference; both follow PyTorch's update rule bit for
bit and, without momentum or weight decay, micrograd's ``p.data -= lr * p.grad``.
"""

from . import _implementation

SGD = _implementation.SGD

__all__ = ["SGD"]
