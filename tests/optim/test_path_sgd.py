"""Path-SGD (Neyshabur, Salakhutdinov & Srebro 2015): the path scaling against an enumeration of all paths, and the
update's invariance to the node-wise rescaling of ReLU networks."""

import copy
import itertools

import pytest
import torch
from torch import nn

from nnlift.optim.path_sgd import PathSGD


def relu_net(sizes, bias=True, seed=0):
    torch.manual_seed(seed)
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(fan_in, fan_out, bias=bias), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double()


def brute_force_scaling(layers):
    """For every edge, Σ over the paths through it of Π of the other edges' squared weights, by listing every path:
    from an input, or from the bias unit of a layer into one of its units, through one unit per layer to an output."""
    sizes = [layers[0].in_features] + [layer.out_features for layer in layers]
    scaling = {}
    sources = [(0, unit, None) for unit in range(sizes[0])]
    sources += [(depth, unit, "bias") for depth, layer in enumerate(layers) if layer.bias is not None
                for unit in range(sizes[depth + 1])]
    for start, unit, kind in sources:
        first = start + 1 if kind == "bias" else start
        for rest in itertools.product(*[range(n) for n in sizes[first + 1:]]):
            nodes = [unit, *rest]
            edges = [(("b", start, unit), layers[start].bias[unit].item())] if kind == "bias" else []
            edges += [(("w", depth, nodes[i + 1], nodes[i]), layers[depth].weight[nodes[i + 1], nodes[i]].item())
                      for i, depth in enumerate(range(first, len(layers)))]
            for key, _ in edges:
                product = 1.0
                for other, weight in edges:
                    if other != key:
                        product *= weight ** 2
                scaling[key] = scaling.get(key, 0.0) + product
    expected = []
    for depth, layer in enumerate(layers):
        expected.append(torch.tensor([[scaling[("w", depth, j, i)] for i in range(layer.in_features)]
                                      for j in range(layer.out_features)], dtype=torch.float64))
        if layer.bias is not None:
            expected.append(torch.tensor([scaling[("b", depth, j)] for j in range(layer.out_features)],
                                         dtype=torch.float64))
    return expected


@pytest.mark.parametrize("bias", [True, False])
def test_scaling_equals_the_enumeration_of_paths(bias):
    net = relu_net([2, 3, 2, 1], bias=bias)
    layers = [m for m in net if isinstance(m, nn.Linear)]
    opt = PathSGD(net, lr=0.1)
    expected = brute_force_scaling(layers)
    scaling = opt.path_scaling()
    assert len(scaling) == len(expected) == (6 if bias else 3)
    for got, want in zip(scaling, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=0)

    X = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    before = [p.detach().clone() for p in opt.param_groups[0]["params"]]
    net(X).pow(2).mean().backward()
    opt.step()
    for param, old, gamma in zip(opt.param_groups[0]["params"], before, expected, strict=True):
        torch.testing.assert_close(param.detach(), old - 0.1 * param.grad / gamma, rtol=0, atol=1e-14)


def rescale(net, layer_index, unit, c):
    """The same function: unit `unit` after layer `layer_index` gets incoming weights and bias times c, outgoing / c."""
    layers = [m for m in net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        layers[layer_index].weight[unit] *= c
        layers[layer_index].bias[unit] *= c
        layers[layer_index + 1].weight[:, unit] /= c


def train(net, optimizer_cls, X, y, steps=25, lr=0.02):
    opt = optimizer_cls(net if optimizer_cls is PathSGD else net.parameters(), lr=lr)
    outputs = []
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(net(X), y).backward()
        opt.step()
        outputs.append(net(X).detach())
    return torch.stack(outputs)


def test_update_is_invariant_to_node_rescaling():
    g = torch.Generator().manual_seed(2)
    X = torch.randn(64, 3, generator=g, dtype=torch.float64)
    y = torch.relu(X @ torch.randn(3, 2, generator=g, dtype=torch.float64)).sum(dim=1, keepdim=True)
    net = relu_net([3, 5, 4, 1], seed=1)
    rescaled = copy.deepcopy(net)
    rescale(rescaled, 0, 1, 8.0)
    rescale(rescaled, 1, 2, 0.1)
    torch.testing.assert_close(rescaled(X), net(X), rtol=0, atol=1e-12)

    trajectories = {}
    for optimizer_cls in (PathSGD, torch.optim.SGD):
        trajectories[optimizer_cls] = [train(copy.deepcopy(model), optimizer_cls, X, y) for model in (net, rescaled)]
    path, sgd = trajectories[PathSGD], trajectories[torch.optim.SGD]
    assert (path[0][-1] - path[0][0]).abs().max() > 0.1  # it trains
    torch.testing.assert_close(path[1], path[0], rtol=0, atol=1e-10)  # the same function at every step
    assert (sgd[1] - sgd[0]).abs().max() > 0.5  # SGD's trajectory depends on the rescaling


def test_zero_scaling_leaves_the_weight_alone():
    net = relu_net([2, 3, 1], seed=0)
    with torch.no_grad():
        net[2].weight[0, 1] = 0.0  # no path through hidden unit 1 reaches the output: its incoming edges have γ = 0
    opt = PathSGD(net, lr=0.1)
    assert (opt.path_scaling()[0][1] == 0).all() and opt.path_scaling()[1][1] == 0
    net(torch.ones(4, 2, dtype=torch.float64)).sum().backward()
    before = net[0].weight.detach().clone()
    opt.step()
    assert torch.isfinite(net[0].weight).all() and torch.equal(net[0].weight[1], before[1])


def test_layers_must_chain_and_state_round_trips():
    with pytest.raises(ValueError, match="do not chain"):
        PathSGD([nn.Linear(2, 3), nn.Linear(4, 1)])
    net = relu_net([2, 3, 1])
    opt = PathSGD(net, lr=0.3)
    twin = PathSGD(copy.deepcopy(net), lr=0.01)
    twin.load_state_dict(opt.state_dict())
    assert twin.param_groups[0]["lr"] == 0.3
