"""The rest of a training job, on both implementations: gradient clipping and the losses
against PyTorch (skipped cleanly without it), and checkpoints of model, optimizer and
schedule that resume bit for bit in a fresh process; hostile files refused."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastgrad
from fastgrad import functional, nn, optim
from fastgrad.nn.utils import clip_grad_norm_, clip_grad_value_
from fastgrad.optim import lr_scheduler


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300) or (math.isnan(a) and math.isnan(b))


# PyTorch sums the squares of several grads unscaled, so below 1e-154 its norm underflows to
# 0 where clip_grad_norm_ scales by the largest and gives the true norm: compared above that
magnitudes = st.one_of(st.just(0.0), st.floats(1e-100, 1e3))
grad_lists = st.lists(st.tuples(magnitudes, st.booleans()).map(lambda m: -m[0] if m[1] else m[0]),
                      min_size=1, max_size=20)  # fmt: skip


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@given(grads=grad_lists, max_norm=st.floats(0.01, 100.0))
def test_clip_grad_norm_matches_pytorch(impl: types.ModuleType, norm_type: float,
                                        grads: list[float], max_norm: float) -> None:  # fmt: skip
    torch = pytest.importorskip("torch", reason="PyTorch is optional; pip install torch==2.13.0")
    params = [impl.Value(0.0) for _ in grads]
    for p, g in zip(params, grads):
        p.grad = g
    weights = [torch.zeros((), dtype=torch.float64, requires_grad=True) for _ in grads]
    for w, g in zip(weights, grads):
        w.grad = torch.tensor(g, dtype=torch.float64)
    total = clip_grad_norm_(params, max_norm, norm_type)
    t_total = torch.nn.utils.clip_grad_norm_(weights, max_norm, norm_type)
    assert close(total, t_total.item())
    assert all(close(p.grad, w.grad.item()) for p, w in zip(params, weights))


@given(grads=st.lists(st.one_of(st.floats(-10, 10), st.just(math.nan)), min_size=1, max_size=9))
def test_clip_grad_value_matches_pytorch(impl: types.ModuleType, grads: list[float]) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is optional; pip install torch==2.13.0")
    params = [impl.Value(0.0) for _ in grads]
    for p, g in zip(params, grads):
        p.grad = g
    clip_grad_value_(params, 1.5)
    t = torch.tensor(grads, dtype=torch.float64).clamp(-1.5, 1.5).tolist()
    assert all(close(p.grad, x) for p, x in zip(params, t))


def test_clipping_refuses_what_is_not_a_value(impl: types.ModuleType) -> None:
    with pytest.raises(TypeError, match="parameters must be Values"):
        clip_grad_norm_([impl.Value(1.0), 2.0], 1.0)
    p = impl.Value(0.0)
    p.grad = math.inf
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(p, 1.0, error_if_nonfinite=True)


def assert_loss_is_torchs(impl: types.ModuleType, out: Any, t_out: Any, reduction: str,
                          values: list[Any], t: Any) -> None:  # fmt: skip
    """A loss (or each, reduction "none") and the gradients of the values it was computed
    from, within 1e-12 of PyTorch's (t the values' tensor, in the same order)."""
    outs = out if reduction == "none" else [out]
    t_outs = t_out.tolist() if reduction == "none" else [t_out.item()]
    assert all(math.isclose(o.data, x, rel_tol=1e-12, abs_tol=1e-12) for o, x in zip(outs, t_outs))
    impl.sum(outs).backward()
    t_out.sum().backward()
    assert all(math.isclose(v.grad, g, rel_tol=1e-12, abs_tol=1e-12)
               for v, g in zip(values, t.grad.flatten().tolist()))  # fmt: skip


LOSSES = ["mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss",
          "binary_cross_entropy_with_logits"]


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(data=st.data())
def test_losses_match_pytorch(impl: types.ModuleType, name: str, reduction: str,
                              data: st.DataObject) -> None:  # fmt: skip
    torch = pytest.importorskip("torch", reason="PyTorch is optional; pip install torch==2.13.0")
    n = data.draw(st.integers(1, 8))
    xs = data.draw(st.lists(st.floats(-30, 30), min_size=n, max_size=n))
    targets = data.draw(st.lists(st.floats(0, 1) if "entropy" in name else st.floats(-30, 30),
                                 min_size=n, max_size=n))  # fmt: skip
    extra: dict[str, Any] = {}
    if "entropy" in name and data.draw(st.booleans()):
        extra = {"pos_weight": data.draw(st.floats(0.1, 5.0)),
                 "weight": data.draw(st.floats(0.1, 2.0))}
    if name in ("huber_loss", "smooth_l1_loss") and data.draw(st.booleans()):
        key = "delta" if name == "huber_loss" else "beta"
        extra = {key: data.draw(st.floats(0.05, 20.0) if key == "delta" else st.sampled_from(
            [0.0, 0.3, 1.0, 7.5]))}
    vs = [impl.Value(x) for x in xs]
    out = getattr(functional, name)(vs, targets, reduction=reduction, **extra)
    t = torch.tensor(xs, dtype=torch.float64, requires_grad=True)
    t_extra = {k: v if k in ("delta", "beta") else torch.tensor(v, dtype=torch.float64)
               for k, v in extra.items()}  # fmt: skip
    t_out = getattr(torch.nn.functional, name)(t, torch.tensor(targets, dtype=torch.float64),
                                               reduction=reduction, **t_extra)  # fmt: skip
    assert_loss_is_torchs(impl, out, t_out, reduction, vs, t)


def test_losses_refuse_shapes_that_do_not_fit(impl: types.ModuleType) -> None:
    with pytest.raises(ValueError, match="2 inputs and 1 targets"):
        functional.mse_loss([impl.Value(1.0), impl.Value(2.0)], [1.0])
    with pytest.raises(ValueError, match="reduction must be"):
        functional.l1_loss(impl.Value(1.0), 2.0, reduction="avg")  # type: ignore[arg-type]
    assert functional.mse_loss(impl.Value(3.0), 1.0).data == 4.0  # one Value, one number


# ---- checkpoints: model, optimizer and schedule; resumed in a fresh process ----

RESUME = """
import random, sys
import fastgrad
from fastgrad import nn, optim
from fastgrad.optim import lr_scheduler
import fastgrad.{engine} as engine

def setup():
    random.seed(4)
    model = nn.MLP(2, [8, 1], activation="tanh", engine=engine)
    opt = optim.Adam(model.parameters(), lr=0.05, amsgrad=True)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=20)
    return model, opt, sched

def train(model, opt, sched, steps):
    for k in steps:
        x = [0.1 * k, -0.2 * k]
        loss = (model(x) - (0.5 if k % 2 else -0.5)) ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
"""


def test_a_checkpoint_resumes_bit_for_bit_in_a_fresh_process(impl: types.ModuleType,
                                                             tmp_path: Path) -> None:  # fmt: skip
    engine = impl.__name__.split(".")[-1]
    setup = textwrap.dedent(RESUME.format(engine=engine))
    namespace: dict[str, Any] = {}
    exec(setup, namespace)
    model, opt, sched = namespace["setup"]()
    namespace["train"](model, opt, sched, range(10))
    path = tmp_path / "checkpoint.json"
    fastgrad.save(model, path, optimizer=opt, scheduler=sched)
    namespace["train"](model, opt, sched, range(10, 20))
    straight = [p.data.hex() for p in model.parameters()]

    resume = setup + textwrap.dedent(f"""
        model, opt, sched = setup()
        fastgrad.load({str(path)!r}, model, optimizer=opt, scheduler=sched)
        train(model, opt, sched, range(10, 20))
        print(" ".join(p.data.hex() for p in model.parameters()))
    """)
    result = subprocess.run([sys.executable, "-c", resume], capture_output=True, text=True,
                            check=True)  # fmt: skip
    assert result.stdout.split() == straight


def test_a_checkpoint_that_does_not_fit_changes_nothing(impl: types.ModuleType,
                                                        tmp_path: Path) -> None:  # fmt: skip
    random.seed(0)
    model = nn.MLP(2, [3, 1], engine=impl)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    path = tmp_path / "checkpoint.json"
    fastgrad.save(model, path, optimizer=opt)
    for p in model.parameters():
        p.grad = 1.0
    opt.step()
    before = ([p.data for p in model.parameters()], opt.state_dict())
    with pytest.raises(ValueError, match="holds the state of a SGD, not of a Adam"):
        fastgrad.load(path, model, optimizer=optim.Adam(model.parameters()))
    with pytest.raises(ValueError, match="holds no scheduler state"):
        fastgrad.load(path, model, scheduler=lr_scheduler.StepLR(optim.SGD(model.parameters()), 3))
    other = optim.SGD(model.parameters()[:3], lr=0.1)
    with pytest.raises(ValueError):
        fastgrad.load(path, model, optimizer=other)
    assert ([p.data for p in model.parameters()], opt.state_dict()) == before


def test_a_hostile_file_gets_value_error(tmp_path: Path) -> None:
    path = tmp_path / "hostile.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="not a fastgrad module file"):
        fastgrad.load(path)
    path.write_text(json.dumps({"format": "fastgrad-module", "version": 1,
                                "state": "{" * 10}))  # fmt: skip
    with pytest.raises(ValueError):
        fastgrad.load(path)


def test_activation_reaches_a_saved_model(impl: types.ModuleType, tmp_path: Path) -> None:
    model = nn.MLP(1, [4, 1], activation="softplus", engine=impl)
    fastgrad.save(model, tmp_path / "m.json")
    assert repr(fastgrad.load(tmp_path / "m.json", engine=impl)) == repr(model)


def test_clip_grad_norm_does_not_underflow(impl: types.ModuleType) -> None:
    params = [impl.Value(0.0), impl.Value(0.0)]
    params[0].grad, params[1].grad = 3e-300, 4e-300
    assert clip_grad_norm_(params, 1.0) == 5e-300


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(data=st.data())
def test_log_softmax_and_nll_loss_match_pytorch(impl: types.ModuleType, reduction: str,
                                                data: st.DataObject) -> None:  # fmt: skip
    torch = pytest.importorskip("torch", reason="PyTorch is optional; pip install torch==2.13.0")
    n, c = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 6))
    rows = data.draw(st.lists(st.lists(st.floats(-700, 700), min_size=c, max_size=c),
                              min_size=n, max_size=n))  # fmt: skip
    targets = data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))
    vs = [[impl.Value(x) for x in row] for row in rows]
    logp = [functional.log_softmax(row) for row in vs]
    out = functional.nll_loss(logp, targets, reduction=reduction)
    t = torch.tensor(rows, dtype=torch.float64, requires_grad=True)
    t_logp = torch.nn.functional.log_softmax(t, dim=1)
    t_out = torch.nn.functional.nll_loss(t_logp, torch.tensor(targets), reduction=reduction)
    assert all(math.isclose(a.data, b, rel_tol=1e-12, abs_tol=1e-12)
               for row, t_row in zip(logp, t_logp.tolist()) for a, b in zip(row, t_row))
    assert_loss_is_torchs(impl, out, t_out, reduction, [v for row in vs for v in row], t)


def test_nll_loss_takes_one_sample_and_a_target_value(impl: types.ModuleType) -> None:
    logp = functional.log_softmax([impl.Value(0.5), impl.Value(-1.0), impl.Value(2.0)])
    by_int = functional.nll_loss(logp, 2)
    by_value = functional.nll_loss(logp, impl.Value(2.0, requires_grad=False))
    assert by_int.data == by_value.data == -logp[2].data
    with pytest.raises(IndexError, match="not a class of 3"):
        functional.nll_loss(logp, 3)
    with pytest.raises(ValueError, match="2 samples and 1 targets"):
        functional.nll_loss([logp, logp], [0])
    with pytest.raises(ValueError, match="delta must be positive"):
        functional.huber_loss(impl.Value(1.0), 0.0, delta=0.0)
