"""Optimizers and learning-rate schedules, as ``torch.optim`` has them.

``SGD``, ``Adam``, ``AdamW`` and ``RMSprop`` take PyTorch's arguments, parameter groups and
``state_dict()``; each step is one loop over the parameters in the engine their Values belong
to (C with the extension), with PyTorch's formulas in PyTorch's order. ``lr_scheduler`` holds
the schedules.
"""

from . import lr_scheduler
from .optimizer import SGD, Adam, AdamW, Optimizer, RMSprop

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSprop", "lr_scheduler"]
