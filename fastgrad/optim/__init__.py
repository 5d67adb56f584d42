"""Optimizers and learning-rate schedules, as ``torch.optim`` has them.

``SGD``, ``Adam``, ``AdamW``, ``RMSprop``, ``NAdam``, ``RAdam``, ``Adagrad``, ``Adamax`` and
``Adadelta`` take PyTorch's arguments, parameter groups and
``state_dict()``; each step is one loop over the parameters in the engine their Values belong
to (C with the extension), with PyTorch's formulas in PyTorch's order. ``lr_scheduler`` holds
the schedules. ``LBFGS`` (a quasi-Newton step over all parameters, ``step(closure)``) stands
apart from the per-parameter rules.
"""

from . import lr_scheduler
from .adaptive import Adadelta, Adagrad, Adamax, NAdam, RAdam
from .lbfgs import LBFGS
from .optimizer import SGD, Adam, AdamW, Optimizer, RMSprop

__all__ = ["LBFGS", "SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "NAdam",
           "Optimizer", "RAdam", "RMSprop", "lr_scheduler"]
