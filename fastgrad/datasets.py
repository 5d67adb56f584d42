"""Toy datasets in numpy alone (no scikit-learn needed)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["make_moons"]


def make_moons(
    n_samples: int = 100,
    noise: float | None = None,
    random_state: int | np.random.RandomState | None = None,
    *,
    shuffle: bool = True,
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Two interleaving half circles, scikit-learn's make_moons without scikit-learn.

    The same numbers as scikit-learn's make_moons for the same arguments.

    Args:
        n_samples: how many points, half on each moon (the outer one gets the smaller half).
        noise: the standard deviation of Gaussian noise added to every coordinate; None adds
            none.
        random_state: a seed, a numpy RandomState, or None for numpy's global random state.
        shuffle: whether the points are shuffled (else the outer moon comes first).

    Returns:
        X of shape (n_samples, 2) and the labels y in {0, 1} of shape (n_samples,).
    """
    if isinstance(random_state, np.random.RandomState):
        rng = random_state
    elif random_state is None:
        rng = np.random.mtrand._rand  # numpy's global RandomState, as np.random.seed sets it
    else:
        rng = np.random.RandomState(random_state)
    outer = n_samples // 2
    inner = n_samples - outer
    outer_angle = np.linspace(0, np.pi, outer)
    inner_angle = np.linspace(0, np.pi, inner)
    X = np.empty((n_samples, 2))
    X[:outer, 0] = np.cos(outer_angle)
    X[:outer, 1] = np.sin(outer_angle)
    X[outer:, 0] = 1 - np.cos(inner_angle)
    X[outer:, 1] = 1 - np.sin(inner_angle) - 0.5
    y = np.concatenate([np.zeros(outer, dtype=np.intp), np.ones(inner, dtype=np.intp)])
    if shuffle:
        order = np.arange(n_samples)
        rng.shuffle(order)
        X, y = X[order], y[order]
    if noise is not None:
        X += rng.normal(scale=noise, size=X.shape)
    return X, y
