"""python -m fastgrad demo --digits: the classifier trains to the accuracy it claims, its run
batches are the loop they replace, and both engines train it to the same bits."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
from test_cli import fastgrad, fastgrad_without

pytest.importorskip("sklearn", reason="the digits demo needs scikit-learn (the demo extra)")

from fastgrad.demos import digits as digits_demo


def small(rows: int) -> digits_demo.Digits:
    data = digits_demo.load(seed=0)
    return digits_demo.Digits(data.X_train[:rows], data.y_train[:rows], data.X_test[:rows],
                              data.y_test[:rows], data.images_test[:rows])  # fmt: skip


def trained_bits(engine: types.ModuleType, data: digits_demo.Digits, **how: object) -> list[float]:
    net, losses, _ = digits_demo.train(engine, data, epochs=2, seed=3, batch=16, **how)
    return [p.data for p in net.model.parameters()] + losses


def test_both_engines_train_the_same_bits() -> None:
    import fastgrad._core
    import fastgrad.reference

    data = small(40)
    c = trained_bits(fastgrad._core, data)
    assert c == trained_bits(fastgrad.reference, data)
    assert c != trained_bits(fastgrad._core, small(39))  # the data reaches the weights


def test_run_batches_are_the_loop_they_replace(impl: types.ModuleType) -> None:
    data = small(40)
    assert trained_bits(impl, data) == trained_bits(impl, data, loop=True)
    if impl.__name__ == "fastgrad._core":
        assert trained_bits(impl, data) == trained_bits(impl, data, threads=3)


def test_demo_reaches_its_accuracy(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs the demo extra")
    picture = tmp_path / "digits.png"
    result = fastgrad("demo", "--digits", "--plot", str(picture))
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.split("test accuracy ")[1].split("%")[0])
    assert accuracy >= 95.0, result.stdout
    assert "the same bits" in result.stdout
    assert "epoch 15/15" in result.stderr  # a tqdm bar per epoch
    assert picture.read_bytes().startswith(b"\x89PNG")


def test_predictions_are_the_largest_score(impl: types.ModuleType) -> None:
    """The test set is scored by a tape of the ten scores, run forward only: each row's
    scores are the bits of the model run eagerly, and no grad is touched."""
    net = digits_demo.classifier(impl, seed=1)
    X = np.random.default_rng(0).random((40, digits_demo.INPUTS))
    scores = net.score_tape.run(net.pixels, X, backward=False, threads=2)
    assert scores.shape == (40, digits_demo.CLASSES)
    for row, predicted, taped in zip(X, net.predict(X, threads=2), scores.tolist()):
        eager = [s.data for s in net.model([impl.Value(float(p)) for p in row])]
        assert taped == eager
        assert eager[predicted] == max(eager)
    assert all(p.grad == 0.0 for p in net.model.parameters())


def test_without_scikit_learn_it_says_how_to_install_it() -> None:
    result = fastgrad_without("sklearn", "demo", "--digits")
    assert result.returncode == 1
    assert "the digits demo needs scikit-learn: pip install 'fastgrad[demo]'" in result.stderr


def test_the_demo_on_dask_workers_gives_the_bits_of_one_process() -> None:
    pytest.importorskip("distributed", reason="--workers needs Dask (fastgrad[distributed])")
    result = fastgrad("demo", "--digits", "--workers", "2", "--steps", "40")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "digits on 2 Dask worker processes" in result.stdout
    assert "; the same bits" in result.stdout, result.stdout
    accuracy = float(result.stdout.split("test accuracy ")[1].split("%")[0])
    assert accuracy > 80.0  # (40 full-batch steps)


def test_workers_without_dask_says_what_to_install() -> None:
    result = fastgrad_without("distributed", "demo", "--digits", "--workers", "2")
    assert result.returncode != 0
    assert "pip install 'fastgrad[distributed]'" in result.stderr
