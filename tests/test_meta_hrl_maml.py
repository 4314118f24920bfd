"""MAML's inner step and the TD-error-variance task weights, checked against hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.meta_hrl.maml import inner_update, step_sizes, variance_weights
from agents.meta_hrl.replay import ReplayBuffer

ALPHA = 0.1


def _task_losses() -> tuple[torch.nn.Module, dict, dict]:
    """A small float64 network and two batches (train, validation) of a regression task."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    net = net.double()
    data = {k: (torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64))
            for k in ("train", "val")}
    return net, data["train"], data["val"]


def _loss(net: torch.nn.Module, params: dict, batch: tuple) -> torch.Tensor:
    x, y = batch
    return ((torch.func.functional_call(net, params, (x,)) - y) ** 2).mean()


def _meta_gradient(first_order: bool) -> dict[str, torch.Tensor]:
    net, train, val = _task_losses()
    params = {k: v.detach().clone().requires_grad_(True) for k, v in net.named_parameters()}
    alpha = step_sizes(params, ALPHA, learn=False)
    adapted = inner_update(lambda p: _loss(net, p, train), params, alpha, first_order=first_order)
    outer = _loss(net, adapted, val)
    return dict(zip(params, torch.autograd.grad(outer, list(params.values()))))


def _finite_difference_meta_gradient(eps: float = 1e-6) -> dict[str, torch.Tensor]:
    """d/dtheta L_val(theta - alpha grad L_train(theta)), by central differences."""
    net, train, val = _task_losses()
    base = {k: v.detach().clone() for k, v in net.named_parameters()}

    def objective(params: dict) -> float:
        p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        grads = torch.autograd.grad(_loss(net, p, train), list(p.values()))
        adapted = {k: v - ALPHA * g for (k, v), g in zip(p.items(), grads)}
        return float(_loss(net, adapted, val).detach())

    result = {}
    for name, value in base.items():
        grad = torch.zeros_like(value)
        for i in range(value.numel()):
            plus = {k: v.clone() for k, v in base.items()}
            minus = {k: v.clone() for k, v in base.items()}
            plus[name].view(-1)[i] += eps
            minus[name].view(-1)[i] -= eps
            grad.view(-1)[i] = (objective(plus) - objective(minus)) / (2 * eps)
        result[name] = grad
    return result


def test_the_second_order_meta_gradient_flows_through_the_inner_step():
    exact = _finite_difference_meta_gradient()
    second = _meta_gradient(first_order=False)
    for name in exact:
        torch.testing.assert_close(second[name], exact[name], rtol=1e-5, atol=1e-7)


def test_the_first_order_option_drops_the_second_order_term():
    exact, first = _finite_difference_meta_gradient(), _meta_gradient(first_order=True)
    gap = max(float((first[k] - exact[k]).abs().max()) for k in exact)
    assert gap > 1e-4  # FOMAML is an approximation, visibly so on this task


def test_the_first_order_meta_gradient_is_the_gradient_at_the_adapted_parameters():
    net, train, val = _task_losses()
    params = {k: v.detach().clone().requires_grad_(True) for k, v in net.named_parameters()}
    adapted = inner_update(lambda p: _loss(net, p, train), params,
                           step_sizes(params, ALPHA, learn=False), first_order=True)
    at_adapted = {k: v.detach().clone().requires_grad_(True) for k, v in adapted.items()}
    expected = torch.autograd.grad(_loss(net, at_adapted, val), list(at_adapted.values()))
    for got, want in zip(_meta_gradient(first_order=True).values(), expected):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("first_order", [False, True])
def test_meta_sgd_step_sizes_get_the_gradient_of_the_validation_loss(first_order):
    """d L_val(theta - alpha * g) / d alpha = -g * grad L_val(theta'), entry by entry, with or
    without the second-order term (which only concerns theta)."""
    net, train, val = _task_losses()
    params = {k: v.detach().clone().requires_grad_(True) for k, v in net.named_parameters()}
    alpha = step_sizes(params, ALPHA, learn=True)
    adapted = inner_update(lambda p: _loss(net, p, train), params, alpha, first_order=first_order)
    got = torch.autograd.grad(_loss(net, adapted, val), list(alpha.values()))
    g_train = torch.autograd.grad(_loss(net, params, train), list(params.values()))
    at_adapted = {k: v.detach().clone().requires_grad_(True) for k, v in adapted.items()}
    g_val = torch.autograd.grad(_loss(net, at_adapted, val), list(at_adapted.values()))
    for got_k, gt, gv in zip(got, g_train, g_val):
        torch.testing.assert_close(got_k, -gt * gv)


def test_a_step_size_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        step_sizes({"w": torch.zeros(2)}, 0.0, learn=True)


def test_softmin_weights_favour_the_task_with_the_lowest_td_variance():
    # z = var / mean(var) = (0.5, 1, 1.5); softmin = e^-z / sum e^-z
    weights = variance_weights(np.array([1.0, 2.0, 3.0]), "softmin")
    np.testing.assert_allclose(weights, [0.50648, 0.30719, 0.18632], atol=5e-5)


def test_softmax_weights_favour_the_task_with_the_highest_td_variance():
    weights = variance_weights(np.array([1.0, 2.0, 3.0]), "softmax")
    np.testing.assert_allclose(weights, [0.18632, 0.30719, 0.50648], atol=5e-5)


def test_a_higher_temperature_flattens_the_weights_and_the_scale_of_the_td_errors_does_not_matter():
    var = np.array([1.0, 2.0, 3.0])
    sharp, flat = variance_weights(var, "softmin", 0.5), variance_weights(var, "softmin", 10.0)
    assert sharp.max() > variance_weights(var, "softmin").max() > flat.max() > 1 / 3
    np.testing.assert_allclose(variance_weights(1000 * var, "softmin"),
                               variance_weights(var, "softmin"))


def test_each_level_counts_alike_whatever_the_scale_of_its_td_errors():
    """Rows are tasks, columns levels: the low level's 20x larger errors do not decide alone."""
    per_level = np.array([[1.0, 60.0], [2.0, 40.0], [3.0, 20.0]])
    # z = mean over levels of var / level mean = ((0.5+1.5)/2, (1+1)/2, (1.5+0.5)/2) = (1, 1, 1)
    np.testing.assert_allclose(variance_weights(per_level, "softmin"), [1 / 3] * 3)
    np.testing.assert_allclose(variance_weights(per_level[:, :1], "softmin"),
                               variance_weights(per_level[:, 0], "softmin"))


@pytest.mark.parametrize(("var", "direction", "temperature"), [
    ([1.0, np.nan], "softmin", 1.0), ([-1.0, 1.0], "softmin", 1.0), ([], "softmin", 1.0),
    ([1.0, 2.0], "softest", 1.0), ([1.0, 2.0], "softmin", 0.0),
])
def test_bad_weighting_inputs_are_refused(var, direction, temperature):
    with pytest.raises(ValueError):
        variance_weights(np.array(var), direction, temperature)


def test_the_replay_buffer_overwrites_its_oldest_transitions_and_restores_exactly():
    buffer = ReplayBuffer(3, {"s": (2,), "r": ()})
    for i in range(5):
        buffer.add(s=np.array([i, i]), r=float(i))
    assert buffer.size == 3
    sample = buffer.sample(200, np.random.default_rng(0))
    assert set(sample["r"].tolist()) == {2.0, 3.0, 4.0}
    restored = ReplayBuffer(3, {"s": (2,), "r": ()})
    restored.load_state_dict(buffer.state_dict())
    for a, b in zip(buffer.sample(5, np.random.default_rng(1)).values(),
                    restored.sample(5, np.random.default_rng(1)).values()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="fields"):
        buffer.add(s=np.zeros(2))
