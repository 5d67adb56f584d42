"""fastgrad.optim on both implementations: C == reference with ==, each optimizer within 1e-12
of torch.optim (foreach=False) after 300 steps for every option set, the schedules' lr
sequences == PyTorch's, state_dict / pickle round trips, and bad hyperparameters refused
before any change. The PyTorch comparisons skip cleanly without it."""

from __future__ import annotations

import itertools
import math
import pickle
import random
import types
from typing import Any

import pytest
from programs import bits

import fastgrad._core
import fastgrad.reference
from fastgrad import optim
from fastgrad.optim import lr_scheduler

OPTIONS: dict[str, list[dict[str, Any]]] = {
    "SGD": [dict(lr=0.05, momentum=m, dampening=d, weight_decay=w, nesterov=n, maximize=x)
            for m, d, w, n, x in itertools.product((0.0, 0.9), (0.0, 0.3), (0.0, 1e-2),
                                                   (False, True), (False, True))
            if not (n and (m == 0.0 or d != 0.0))],
    "Adam": [dict(lr=1e-2, betas=(0.8, 0.99), eps=e, weight_decay=w, amsgrad=a, maximize=x)
             for e, w, a, x in itertools.product((1e-8, 0.0), (0.0, 1e-2), (False, True),
                                                 (False, True))],
    "AdamW": [dict(lr=1e-2, weight_decay=w, amsgrad=a, maximize=x)
              for w, a, x in itertools.product((0.0, 0.1), (False, True), (False, True))],
    "RMSprop": [dict(lr=1e-2, alpha=0.9, eps=1e-8, weight_decay=w, momentum=m, centered=c,
                     maximize=x)
                for w, m, c, x in itertools.product((0.0, 1e-2), (0.0, 0.5), (False, True),
                                                    (False, True))],
    "NAdam": [dict(lr=1e-2, betas=(0.8, 0.99), eps=e, weight_decay=w, momentum_decay=m,
                   decoupled_weight_decay=d, maximize=x)
              for e, w, m, d, x in itertools.product((1e-8, 0.0), (0.0, 1e-2), (4e-3, 0.1),
                                                     (False, True), (False, True))],
    "RAdam": [dict(lr=1e-2, betas=(0.8, b2), eps=e, weight_decay=w, decoupled_weight_decay=d,
                   maximize=x)
              for b2, e, w, d, x in itertools.product((0.99, 0.9), (1e-8, 0.0), (0.0, 1e-2),
                                                      (False, True), (False, True))],
    "Adagrad": [dict(lr=1e-1, lr_decay=l, weight_decay=w, initial_accumulator_value=a, eps=e,
                     maximize=x)
                for l, w, a, e, x in itertools.product((0.0, 1e-2), (0.0, 1e-2), (0.0, 0.5),
                                                       (1e-10, 0.0), (False, True))],
    "Adamax": [dict(lr=1e-2, betas=(0.8, 0.99), eps=e, weight_decay=w, maximize=x)
               for e, w, x in itertools.product((1e-8, 0.0), (0.0, 1e-2), (False, True))],
    "Adadelta": [dict(lr=l, rho=r, eps=1e-6, weight_decay=w, maximize=x)
                 for l, r, w, x in itertools.product((1.0, 0.3), (0.9, 0.5), (0.0, 1e-2),
                                                     (False, True))],
}  # fmt: skip
CASES = [(name, options) for name, sets in OPTIONS.items() for options in sets]


def gradient_stream(count: int, steps: int, seed: int = 0) -> list[list[float]]:
    rng = random.Random(seed)
    return [[rng.gauss(0.0, 1.0) * rng.choice((1e-3, 1.0, 30.0)) for _ in range(count)]
            for _ in range(steps)]  # fmt: skip


def train(impl: types.ModuleType, name: str, options: dict[str, Any], start: list[float],
          grads: list[list[float]]) -> list[float]:  # fmt: skip
    params = [impl.Value(x) for x in start]
    opt = getattr(optim, name)(params, **options)
    for step in grads:
        opt.zero_grad()
        for p, g in zip(params, step):
            p.grad = g
        opt.step()
    return [p.data for p in params]


def start_values(count: int) -> list[float]:
    rng = random.Random(1)
    return [rng.uniform(-2.0, 2.0) for _ in range(count)]


@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_c_and_reference_take_the_same_steps(name: str, options: dict[str, Any]) -> None:
    start, grads = start_values(8), gradient_stream(8, 40)
    c = train(fastgrad._core, name, options, start, grads)
    py = train(fastgrad.reference, name, options, start, grads)
    assert [bits(x) for x in c] == [bits(x) for x in py]


@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_within_1e12_of_pytorch_after_300_steps(name: str, options: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is optional; pip install torch==2.13.0")
    count, steps = 16, 300
    start, grads = start_values(count), gradient_stream(count, steps, seed=2)
    ours = train(fastgrad._core, name, options, start, grads)
    weights = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    # NAdam's running product of momentum factors is a scalar tensor of the default dtype:
    # float64 here, as everything of fastgrad's is
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        opt = getattr(torch.optim, name)([weights], foreach=False, **options)
        for step in grads:
            opt.zero_grad()
            weights.grad = torch.tensor(step, dtype=torch.float64)
            opt.step()
    finally:
        torch.set_default_dtype(before)
    theirs = weights.detach().tolist()
    worst = max(abs(a - b) / max(abs(b), 1e-300) for a, b in zip(ours, theirs))
    assert worst <= 1e-12, worst


def test_param_groups_and_the_lr_attribute(impl: types.ModuleType) -> None:
    a, b = [impl.Value(1.0)], [impl.Value(1.0)]
    opt = optim.SGD([{"params": a}, {"params": b, "lr": 0.5}], lr=0.1, momentum=0.9)
    for p in a + b:
        p.grad = 1.0
    opt.step()
    assert (a[0].data, b[0].data) == (1.0 - 0.1 * 1.0, 1.0 - 0.5 * 1.0)
    assert opt.lr == 0.1 and opt.momentum == 0.9
    opt.lr = opt.lr * 0.5  # sets every group's
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.05]
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": a})
    with pytest.raises(TypeError, match="no hyperparameter 'betas'"):
        optim.SGD([{"params": [impl.Value(0.0)], "betas": (0.9, 0.9)}])


@pytest.mark.parametrize("make, message", [
    (lambda ps: optim.SGD(ps, lr=-1.0), "Invalid learning rate: -1.0"),
    (lambda ps: optim.SGD(ps, lr=0.1, nesterov=True), "Nesterov momentum requires"),
    (lambda ps: optim.Adam(ps, betas=(1.0, 0.9)), "Invalid beta parameter at index 0"),
    (lambda ps: optim.Adam(ps, eps=-1e-8), "Invalid epsilon value"),
    (lambda ps: optim.RMSprop(ps, momentum=-0.5), "Invalid momentum value"),
    (lambda ps: optim.AdamW([]), "empty parameter list"),
])  # fmt: skip
def test_bad_hyperparameters_are_refused(impl: types.ModuleType, make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make([impl.Value(1.0)])


def test_bad_hyperparameters_set_later_change_nothing(impl: types.ModuleType) -> None:
    p = impl.Value(1.0)
    p.grad = 1.0
    opt = optim.Adam([p], lr=0.1)
    opt.lr = -0.1
    with pytest.raises(ValueError, match="Invalid learning rate"):
        opt.step()
    assert p.data == 1.0 and opt.state == {}


# ---- state: state_dict, load_state_dict, pickle ----


def stepped(impl: types.ModuleType, name: str, options: dict[str, Any], steps: int,
            grads: list[list[float]], resume: Any = None) -> tuple[list[Any], Any]:  # fmt: skip
    params = [impl.Value(x) for x in start_values(4)]
    opt = getattr(optim, name)(params, **options)
    if resume is not None:
        for p, x in zip(params, resume[0]):
            p.data = x
        opt.load_state_dict(resume[1])
    for step in grads[:steps]:
        for p, g in zip(params, step):
            p.grad = g
        opt.step()
    return params, opt


@pytest.mark.parametrize("name, options", [CASES[5], CASES[-1], ("Adam", OPTIONS["Adam"][3])])
def test_state_dict_resumes_bit_for_bit(impl: types.ModuleType, name: str,
                                        options: dict[str, Any]) -> None:  # fmt: skip
    grads = gradient_stream(4, 20, seed=5)
    straight, _ = stepped(impl, name, options, 20, grads)
    half, opt = stepped(impl, name, options, 10, grads)
    saved = pickle.loads(pickle.dumps(opt.state_dict()))
    resumed, _ = stepped(impl, name, options, 10, grads[10:], ([p.data for p in half], saved))
    assert [p.data for p in resumed] == [p.data for p in straight]


LAYOUTS = {"Adam": dict(lr=0.1, amsgrad=True), "NAdam": {}, "RAdam": {},
           "Adagrad": dict(initial_accumulator_value=0.25), "Adamax": {}, "Adadelta": {}}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_state_dict_has_pytorchs_layout(impl: types.ModuleType, name: str) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is optional; pip install torch==2.13.0")
    params = [impl.Value(1.0), impl.Value(2.0)]
    weights = [torch.tensor(1.0, dtype=torch.float64, requires_grad=True),
               torch.tensor(2.0, dtype=torch.float64, requires_grad=True)]  # fmt: skip
    ours = getattr(optim, name)(params, **LAYOUTS[name])
    theirs = getattr(torch.optim, name)(weights, foreach=False, **LAYOUTS[name])
    for p, w in zip(params, weights):
        p.grad, w.grad = 0.5, torch.tensor(0.5, dtype=torch.float64)
    ours.step()
    before = torch.get_default_dtype()  # NAdam's mu_product: float64, as fastgrad's
    torch.set_default_dtype(torch.float64)
    try:
        theirs.step()
    finally:
        torch.set_default_dtype(before)
    a, b = ours.state_dict(), theirs.state_dict()
    assert a["state"].keys() == b["state"].keys()
    for i, entry in a["state"].items():
        assert entry.keys() == b["state"][i].keys()
        assert all(math.isclose(v, float(b["state"][i][k]), rel_tol=1e-15)
                   for k, v in entry.items())  # fmt: skip
    assert a["param_groups"][0]["params"] == b["param_groups"][0]["params"]
    assert set(a["param_groups"][0]) <= set(b["param_groups"][0])


def test_a_state_that_does_not_fit_changes_nothing(impl: types.ModuleType) -> None:
    params = [impl.Value(1.0), impl.Value(2.0)]
    opt = optim.Adam(params, lr=0.1)
    for p in params:
        p.grad = 1.0
    opt.step()
    before = opt.state_dict()
    other = optim.Adam([impl.Value(0.0)], lr=0.1)
    bad_states = [
        other.state_dict(),  # one parameter, not two
        {**before, "param_groups": [{**before["param_groups"][0], "lr": "fast"}]},
        {**before, "state": {0: {"step": 1.0}}},
        {**before, "state": {7: before["state"][0]}},
        {"state": before["state"]},
        [1, 2],
    ]
    for bad in bad_states:
        with pytest.raises((ValueError, TypeError)):
            opt.load_state_dict(bad)  # type: ignore[arg-type]
        assert opt.state_dict() == before


def test_an_optimizer_pickles_with_its_model(impl: types.ModuleType) -> None:
    params = [impl.Value(x) for x in (0.5, -1.5)]
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    for p in params:
        p.grad = 0.25
    opt.step()
    params2, opt2 = pickle.loads(pickle.dumps((params, opt)))
    for q in params + params2:
        q.grad = 0.5
    opt.step()
    opt2.step()
    assert [p.data for p in params] == [p.data for p in params2]
    assert opt2.param_groups[0]["params"][0] is params2[0]


# ---- schedules: the lr sequence == PyTorch's ----

SCHEDULES: dict[str, tuple[Any, dict[str, Any]]] = {
    "StepLR": ("SGD", dict(step_size=30, gamma=0.7)),
    "MultiStepLR": ("SGD", dict(milestones=[50, 120, 120, 300], gamma=0.3)),
    "ExponentialLR": ("SGD", dict(gamma=0.99)),
    "CosineAnnealingLR": ("SGD", dict(T_max=70, eta_min=1e-4)),
    "LambdaLR": ("SGD", dict(lr_lambda=lambda epoch: 0.95**epoch + 1 / (epoch + 1))),
    "LinearLR": ("SGD", dict(start_factor=0.1, end_factor=0.9, total_iters=150)),
    "OneCycleLR-sgd": ("SGD", dict(max_lr=0.5, total_steps=400)),
    "OneCycleLR-adam": ("Adam", dict(max_lr=0.5, total_steps=400, three_phase=True,
                                     anneal_strategy="linear")),
    "ConstantLR": ("SGD", dict(factor=0.3, total_iters=77)),
    "MultiplicativeLR": ("SGD", dict(lr_lambda=lambda epoch: 0.99 if epoch % 3 else 1.01)),
    "PolynomialLR": ("SGD", dict(total_iters=250, power=1.7)),
    "CosineAnnealingWarmRestarts": ("SGD", dict(T_0=13, T_mult=2, eta_min=1e-3)),
    "CosineAnnealingWarmRestarts-1": ("SGD", dict(T_0=29, eta_min=1e-4)),
    "CyclicLR-sgd": ("SGD", dict(base_lr=0.01, max_lr=0.3, step_size_up=37, step_size_down=51,
                                 mode="triangular2")),
    "CyclicLR-adam": ("Adam", dict(base_lr=0.01, max_lr=0.3, step_size_up=40, mode="exp_range",
                                   gamma=0.995)),
}


def lr_sequence(module: Any, make_optimizer: Any, schedule: str, kwargs: dict[str, Any]) -> Any:
    opt = make_optimizer()
    scheduler = getattr(module, schedule.split("-")[0])(opt, **kwargs)
    seen = []
    for _ in range(400):
        opt.step()
        scheduler.step()
        group = opt.param_groups[0]
        seen.append((group["lr"], group.get("momentum"), tuple(group.get("betas", ()))))
    return seen


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_schedules_give_pytorchs_lrs(impl: types.ModuleType, schedule: str) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is optional; pip install torch==2.13.0")
    kind, kwargs = SCHEDULES[schedule]
    momentum = {"momentum": 0.9} if kind == "SGD" else {}
    ours = lr_sequence(lr_scheduler, lambda: getattr(optim, kind)([impl.Value(1.0)], lr=0.1,
                                                                   **momentum), schedule, kwargs)
    weight = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    theirs = lr_sequence(torch.optim.lr_scheduler,
                         lambda: getattr(torch.optim, kind)([weight], lr=0.1, **momentum),
                         schedule, kwargs)  # fmt: skip
    assert ours == theirs


def composite(module: Any, kind: str, opt: Any) -> Any:
    """SequentialLR of a warm-up, a cosine, a step and a polynomial schedule, or
    ChainedScheduler of an exponential and a cyclic one, over one optimizer."""
    if kind == "SequentialLR":
        warm = module.LinearLR(opt, start_factor=0.1, total_iters=20)
        cosine = module.CosineAnnealingLR(opt, T_max=90, eta_min=1e-3)
        step = module.StepLR(opt, step_size=17, gamma=0.8)
        poly = module.PolynomialLR(opt, total_iters=80, power=0.5)
        return module.SequentialLR(opt, [warm, cosine, step, poly],
                                   milestones=[30, 150, 300])  # fmt: skip
    return module.ChainedScheduler([module.ExponentialLR(opt, gamma=0.995),
                                    module.CyclicLR(opt, base_lr=0.01, max_lr=0.1,
                                                    step_size_up=25)])  # fmt: skip


@pytest.mark.parametrize("kind", ["SequentialLR", "ChainedScheduler"])
def test_composite_schedules_give_pytorchs_lrs(impl: types.ModuleType, kind: str) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is optional; pip install torch==2.13.0")
    runs = []
    for module, make in ((lr_scheduler, lambda: optim.SGD([impl.Value(1.0)], lr=0.1,
                                                           momentum=0.9)),
                         (torch.optim.lr_scheduler, lambda: torch.optim.SGD(
                             [torch.tensor(1.0, requires_grad=True)], lr=0.1, momentum=0.9))):
        opt = make()
        scheduler = composite(module, kind, opt)
        lrs = [scheduler.get_last_lr()[0]]
        for _ in range(400):
            opt.step()
            scheduler.step()
            lrs.append((scheduler.get_last_lr()[0], opt.param_groups[0]["momentum"]))
        runs.append(lrs)
    assert runs[0] == runs[1] and len(set(runs[0])) > 40


def lrs_of(opt: Any, scheduler: Any, steps: int) -> list[list[float]]:
    """The lrs after each of `steps` optimizer and schedule steps."""
    seen = []
    for _ in range(steps):
        opt.step()
        scheduler.step()
        seen.append(scheduler.get_last_lr())
    return seen


@pytest.mark.parametrize("kind", ["SequentialLR", "ChainedScheduler"])
def test_composite_schedules_resume_from_their_state(impl: types.ModuleType, kind: str,
                                                     tmp_path: Any) -> None:  # fmt: skip
    import fastgrad

    def make() -> tuple[Any, Any, Any]:
        model = fastgrad.nn.Neuron(1)
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        return model, opt, composite(lr_scheduler, kind, opt)

    model, opt, scheduler = make()
    lrs_of(opt, scheduler, 140)
    fastgrad.save(model, tmp_path / "run.json", optimizer=opt, scheduler=scheduler)
    copied = pickle.loads(pickle.dumps((opt, scheduler)))
    straight = lrs_of(opt, scheduler, 60)
    model2, opt2, scheduler2 = make()
    fastgrad.load(tmp_path / "run.json", model2, optimizer=opt2, scheduler=scheduler2)
    for o, sched in ((opt2, scheduler2), copied):
        assert lrs_of(o, sched, 60) == straight
    with pytest.raises(ValueError, match="does not fit"):
        scheduler2.load_state_dict({**scheduler2.state_dict(), "_schedulers": []})


def test_reduce_on_plateau_gives_pytorchs_lrs(impl: types.ModuleType) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is optional; pip install torch==2.13.0")
    metrics = [1.0 / (1 + k // 7) + 0.01 * (k % 3) for k in range(400)]
    kwargs = dict(mode="min", factor=0.5, patience=3, cooldown=2, min_lr=1e-4)
    runs = []
    for module, make in ((lr_scheduler, lambda: optim.SGD([impl.Value(1.0)], lr=0.1)),
                         (torch.optim.lr_scheduler, lambda: torch.optim.SGD(
                             [torch.tensor(1.0, requires_grad=True)], lr=0.1))):  # fmt: skip
        opt = make()
        scheduler = module.ReduceLROnPlateau(opt, **kwargs)
        lrs = []
        for metric in metrics:
            opt.step()
            scheduler.step(metric)
            lrs.append(scheduler.get_last_lr()[0])
        runs.append(lrs)
    assert runs[0] == runs[1] and len(set(runs[0])) > 3


def test_schedule_state_resumes(impl: types.ModuleType) -> None:
    def make() -> tuple[Any, Any]:
        opt = optim.Adam([impl.Value(1.0)], lr=0.1)
        return opt, lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=100)

    opt, scheduler = make()
    lrs_of(opt, scheduler, 30)
    saved = pickle.loads(pickle.dumps((opt.state_dict(), scheduler.state_dict())))
    straight = lrs_of(opt, scheduler, 30)
    opt2, scheduler2 = make()
    opt2.load_state_dict(saved[0])
    scheduler2.load_state_dict(saved[1])
    assert lrs_of(opt2, scheduler2, 30) == straight
    with pytest.raises(ValueError, match="does not fit"):
        scheduler2.load_state_dict({"last_epoch": 3})


# ---- state from outside: validated, edits seen, every pair pickled ----


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["param_groups"][0].update(maximize="false"), "maximize must be True or False"),
    (lambda d: d["param_groups"][0].update(amsgrad=1), "amsgrad must be True or False"),
    (lambda d: d["state"][0].update(step=-1.0), "'step' must not be negative"),
    (lambda d: d["state"][0].update(step=2.5), "whole number of steps"),
    (lambda d: d["state"][0].update(step=True), "'step' must be a number"),
    (lambda d: d["state"][0].update(exp_avg_sq=-1e-3), "'exp_avg_sq' must not be negative"),
    (lambda d: d["state"][0].update(exp_avg="0.1"), "exp_avg"),
])  # fmt: skip
def test_load_state_dict_checks_types_and_ranges(impl: types.ModuleType, edit: Any,
                                                 message: str) -> None:  # fmt: skip
    """A state that would train wrongly ("false" is truthy: maximize ascends; a negative
    exp_avg_sq gives nan next step) is refused, and nothing changes."""
    w = impl.Value(1.0)
    opt = optim.Adam([w], lr=0.1)
    w.grad = 0.5
    opt.step()
    state = opt.state_dict()
    before = pickle.dumps(state)
    edit(state)
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(state)
    assert pickle.dumps(opt.state_dict()) == before


def test_edits_to_param_groups_are_seen(impl: types.ModuleType) -> None:
    """PyTorch's optimizers step whatever param_groups[i]["params"] holds: fastgrad's ignored
    an edit, and state_dict() then failed with IndexError."""
    w, v, u = impl.Value(1.0), impl.Value(2.0), impl.Value(3.0)
    opt = optim.SGD([w], lr=0.5, momentum=0.9)
    for p in (w, v, u):
        p.grad = 1.0
    opt.step()
    opt.param_groups[0]["params"].append(v)
    opt.step()
    assert (w.data, v.data) == (1.0 - 0.5 - 0.5 * 1.9, 2.0 - 0.5)
    assert sorted(opt.state_dict()["state"]) == [0, 1]
    opt.param_groups[0]["params"] = [v, u]  # w's state goes, v keeps its buffer
    opt.step()
    assert (v.data, u.data) == (1.5 - 0.5 * 1.9, 2.5)
    assert opt.state_dict()["state"][0] == {"momentum_buffer": 1.9}
    opt.add_param_group({"params": [w]})
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.param_groups[1]["params"].append(v)
        opt.step()
    opt.param_groups[1]["params"].pop()
    del opt.param_groups[1]
    with pytest.raises(ValueError, match="add_param_group"):
        opt.step()


def test_parameters_must_be_leaves(impl: types.ModuleType) -> None:
    """As PyTorch refuses a non-leaf tensor: a computed node's data would be overwritten by
    its graph's next replay, so the update would be lost."""
    w = impl.Value(1.0)
    with pytest.raises(ValueError, match="must be leaves"):
        optim.SGD([w * 2.0], lr=0.1)
    opt = optim.SGD([w], lr=0.1)
    opt.param_groups[0]["params"].append(w.tanh())
    with pytest.raises(ValueError, match="must be leaves"):
        opt.step()


def _decay(epoch: int) -> float:
    return 0.9**epoch


PAIRS = {
    "StepLR": dict(step_size=2, gamma=0.5),
    "MultiStepLR": dict(milestones=[1, 3], gamma=0.5),
    "ExponentialLR": dict(gamma=0.9),
    "CosineAnnealingLR": dict(T_max=5),
    "LambdaLR": dict(lr_lambda=_decay),
    "LinearLR": dict(total_iters=4),
    "OneCycleLR": dict(max_lr=0.5, total_steps=20),
    "ReduceLROnPlateau": dict(patience=0),
    "ConstantLR": dict(factor=0.5, total_iters=3),
    "MultiplicativeLR": dict(lr_lambda=_decay),
    "PolynomialLR": dict(total_iters=6, power=2.0),
    "CosineAnnealingWarmRestarts": dict(T_0=3, T_mult=2),
    "CyclicLR": dict(base_lr=0.01, max_lr=0.2, step_size_up=3),
}


@pytest.mark.parametrize("optimizer", ["SGD", "Adam", "AdamW", "RMSprop", "NAdam", "RAdam",
                                       "Adagrad", "Adamax", "Adadelta"])
@pytest.mark.parametrize("schedule", sorted(PAIRS))
def test_every_optimizer_and_scheduler_pair_round_trips(impl: types.ModuleType, optimizer: str,
                                                        schedule: str) -> None:  # fmt: skip
    """Pickled and deep-copied together mid-training, every pair goes on with the bits of
    the pair that was never copied (a scheduler's initial_lr broke unpickling)."""
    import copy

    def make() -> tuple[Any, Any, Any]:
        w = impl.Value(1.0)
        extra = {"momentum": 0.9} if optimizer in ("SGD", "RMSprop") else {}
        opt = getattr(optim, optimizer)([w], lr=0.1, **extra)
        kwargs = dict(PAIRS[schedule])
        if schedule in ("CyclicLR", "OneCycleLR") and optimizer in ("Adagrad", "Adadelta"):
            kwargs["cycle_momentum"] = False  # they have no momentum to cycle
        return w, opt, getattr(lr_scheduler, schedule)(opt, **kwargs)

    def train(w: Any, opt: Any, scheduler: Any, steps: int) -> list[bytes]:
        seen = []
        for k in range(steps):
            w.grad = 0.25 * w.data + k
            opt.step()
            if schedule == "ReduceLROnPlateau":
                scheduler.step(1.0)
            else:
                scheduler.step()
            seen.append(bits(w.data))
        return seen

    pair = make()
    train(*pair, 3)
    copies = [pickle.loads(pickle.dumps(pair)), copy.deepcopy(pair)]
    straight = train(*pair, 4)
    for copied in copies:
        assert train(*copied, 4) == straight


# ---- LBFGS: PyTorch's iterations ----


def _rosenbrock(xs: list[Any]) -> Any:
    return (1.0 - xs[0]) ** 2 + 100.0 * (xs[1] - xs[0] * xs[0]) ** 2


def _logistic_data() -> tuple[list[list[float]], list[float]]:
    import random

    rng = random.Random(5)
    X = [[rng.gauss(0, 1) for _ in range(3)] for _ in range(40)]
    y = [1.0 if x[0] - 0.5 * x[1] + 0.3 * x[2] + rng.gauss(0, 0.5) > 0 else 0.0 for x in X]
    return X, y


def _lbfgs_runs(impl: types.ModuleType, problem: str, line_search: str | None,
                steps: int, max_iter: int) -> tuple[list[float], list[float]]:  # fmt: skip
    """(the parameters after `steps` steps, every loss the closure computed) for fastgrad
    and, through the same calls, PyTorch."""
    torch = pytest.importorskip("torch", reason="PyTorch is optional; pip install torch==2.13.0")
    start = [-1.2, 1.0] if problem == "rosenbrock" else [0.1, -0.2, 0.05, 0.0]
    X, y = _logistic_data()
    results = []
    for side in ("fastgrad", "torch"):
        if side == "fastgrad":
            params = [impl.Value(x) for x in start]
            opt: Any = optim.LBFGS(params, lr=1, max_iter=max_iter, history_size=7,
                                   line_search_fn=line_search)  # fmt: skip
        else:
            tensor = torch.tensor(start, dtype=torch.float64, requires_grad=True)
            params = [tensor]
            opt = torch.optim.LBFGS(params, lr=1, max_iter=max_iter, history_size=7,
                                    line_search_fn=line_search)  # fmt: skip
        losses: list[float] = []

        def closure(opt: Any = opt, side: str = side, params: Any = params,
                    losses: list[float] = losses) -> Any:  # fmt: skip
            opt.zero_grad()
            if side == "fastgrad":
                xs = params
            else:
                xs = list(params[0])
            if problem == "rosenbrock":
                loss = _rosenbrock(xs)
            else:
                total: Any = 0.0
                for row, label in zip(X, y):
                    z = xs[3] + sum(w * x for w, x in zip(xs[:3], row))
                    total = total + (z.exp() + 1.0).log() - label * z if side == "fastgrad" \
                        else total + torch.nn.functional.softplus(z) - label * z
                loss = total * (1.0 / len(X)) + 0.01 * sum(w * w for w in xs[:3])
            loss.backward()
            losses.append(float(loss.data if side == "fastgrad" else loss.detach()))
            return loss

        for _ in range(steps):
            opt.step(closure)
        final = [p.data for p in params] if side == "fastgrad" else params[0].tolist()
        results.append((final, losses))
    # PyTorch moves the parameters by p + t * d in one fused multiply-add, fastgrad as Python
    # floats do (two roundings): the paths differ in the last bits, up to 1e-10 on the way
    # through Rosenbrock's valley, and meet again at the end
    (ours, our_losses), (theirs, their_losses) = results
    assert len(our_losses) == len(their_losses)
    assert all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12) for a, b in zip(ours, theirs))
    assert all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
               for a, b in zip(our_losses, their_losses))  # fmt: skip
    return ours, our_losses


# (Rosenbrock's valley with fixed steps is chaotic: last-bit differences grow there)
@pytest.mark.parametrize("problem, line_search", [("rosenbrock", "strong_wolfe"),
                                                  ("logistic", None),
                                                  ("logistic", "strong_wolfe")])
def test_lbfgs_takes_pytorchs_iterations(impl: types.ModuleType, problem: str,
                                         line_search: str | None) -> None:  # fmt: skip
    final, losses = _lbfgs_runs(impl, problem, line_search, steps=1, max_iter=100)
    if problem == "rosenbrock":
        assert all(abs(x - 1.0) < 1e-5 for x in final)  # the minimum at (1, 1)
    assert losses[-1] < losses[0]
    _lbfgs_runs(impl, problem, line_search, steps=20, max_iter=5)  # the history carried over


def test_lbfgs_resumes_from_its_state_and_refuses_bad_ones(impl: types.ModuleType) -> None:
    def make() -> tuple[list[Any], Any, Any]:
        params = [impl.Value(-1.2), impl.Value(1.0)]
        opt = optim.LBFGS(params, max_iter=4, line_search_fn="strong_wolfe")

        def closure() -> Any:
            opt.zero_grad()
            loss = _rosenbrock(params)
            loss.backward()
            return loss

        return params, opt, closure

    def closure_for(params: list[Any], opt: Any) -> Any:
        def closure() -> Any:
            opt.zero_grad()
            loss = _rosenbrock(params)
            loss.backward()
            return loss

        return closure

    params, opt, closure = make()
    for _ in range(3):
        opt.step(closure)
    saved = opt.state_dict()
    copied_params, copied = pickle.loads(pickle.dumps((params, opt)))
    params2, opt2, closure2 = make()
    for p, q in zip(params2, params):
        p.data = q.data
    opt2.load_state_dict(saved)
    for _ in range(3):
        opt.step(closure)
        opt2.step(closure2)
        copied.step(closure_for(copied_params, copied))
    assert [bits(p.data) for p in params2] == [bits(p.data) for p in params]
    assert [bits(p.data) for p in copied_params] == [bits(p.data) for p in params]
    with pytest.raises(ValueError, match="state vector has 3 entries"):
        opt2.load_state_dict({**saved, "state": {0: {**saved["state"][0], "d": [1.0, 2.0, 3.0]}}})
    with pytest.raises(ValueError, match="parameter groups"):
        optim.LBFGS([{"params": [params[0]]}, {"params": [params[1]]}])
    with pytest.raises(TypeError, match="needs a closure"):
        opt2.step()
    with pytest.raises(ValueError, match="line_search_fn"):
        optim.LBFGS(params, line_search_fn="armijo")
