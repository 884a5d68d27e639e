"""Network size (Neyshabur, Tomioka & Srebro 2015; Path-SGD): path norm, block networks, verdicts, the fast run."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from nnlift.optim import PathSGD
from nnlift.reproduce import network_size
from nnlift.reproduce.network_size import (
    _BlockNetwork,
    _select,
    interpolation_index,
    no_rise_verdict,
    non_increasing_verdict,
    norm_growth_verdict,
    path_norm,
    path_sgd_verdict,
    weight_norm,
)


@pytest.fixture(scope="module")
def result():
    return network_size.run(fast=True)


def _tiny(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(4, 3)), rng.normal(size=4), rng.normal(size=(2, 4)), rng.normal(size=2)


def test_path_norm_is_the_sum_over_enumerated_paths():
    """Brute force: every input → hidden → output path, every bias-1 → hidden → output path, every output bias."""
    W1, b1, W2, b2 = _tiny()
    total = sum(W1[j, i] ** 2 * W2[o, j] ** 2 for i, j, o in itertools.product(range(3), range(4), range(2)))
    total += sum(b1[j] ** 2 * W2[o, j] ** 2 for j, o in itertools.product(range(4), range(2)))
    total += sum(b2[o] ** 2 for o in range(2))
    assert path_norm(W1, b1, W2, b2) == pytest.approx(math.sqrt(total), rel=1e-12)


def test_path_norm_is_rescaling_invariant_and_the_l2_norm_is_not():
    """Scaling a hidden unit's incoming weights and bias by c and its outgoing ones by 1/c keeps the function and
    the path norm (Neyshabur et al. 2015) but changes the ℓ2 norm."""
    W1, b1, W2, b2 = _tiny(1)
    scale = np.array([3.0, 1.0, 0.2, 1.0])
    rescaled = (W1 * scale[:, None], b1 * scale, W2 / scale, b2)
    assert path_norm(*rescaled) == pytest.approx(path_norm(W1, b1, W2, b2), rel=1e-12)
    assert weight_norm(*rescaled) != pytest.approx(weight_norm(W1, b1, W2, b2), rel=1e-3)
    flat = np.concatenate([a.ravel() for a in (W1, b1, W2, b2)])
    assert weight_norm(W1, b1, W2, b2) == pytest.approx(np.linalg.norm(flat), rel=1e-12)


@pytest.mark.parametrize("method", ["sgd", "path_sgd"])
def test_each_block_trains_like_a_network_of_its_own(method):
    """A few steps of the block network (loss of block m weighted by its step, optimiser step 1, masked output
    gradient) equal the same steps of block m alone, with its own step, for SGD and for PathSGD."""
    generator = torch.Generator().manual_seed(0)
    X, y = torch.randn(16, 5, generator=generator), torch.randint(0, 3, (16,), generator=generator)
    lrs = [0.05, 0.5]
    net = _BlockNetwork(5, 3, 6, lrs, [torch.Generator().manual_seed(s) for s in (1, 2)])
    m = 3  # second initialisation, second step
    alone = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():
        for layer, array in zip((alone[0].weight, alone[0].bias, alone[2].weight, alone[2].bias), net.block(m),
                                strict=True):
            layer.copy_(torch.as_tensor(array))
    block_opt = torch.optim.SGD(net.parameters(), lr=1.0) if method == "sgd" else PathSGD(net.layers, lr=1.0)
    alone_opt = torch.optim.SGD(alone.parameters(), lr=lrs[1]) if method == "sgd" else PathSGD(alone, lr=lrs[1])
    for _ in range(3):
        loss, _ = net.losses(X, y)
        block_opt.zero_grad()
        (net.step_weights * loss).sum().backward()
        net.layers[1].weight.grad.mul_(net.mask)
        block_opt.step()
        alone_opt.zero_grad()
        nn.functional.cross_entropy(alone(X), y).backward()
        alone_opt.step()
    for mine, theirs in zip(net.block(m), (alone[0].weight, alone[0].bias, alone[2].weight, alone[2].bias),
                            strict=True):
        np.testing.assert_allclose(mine, theirs.detach().numpy(), rtol=1e-4, atol=1e-6)
    off_block = net.layers[1].weight.detach()[net.mask == 0]
    assert torch.all(off_block == 0)


def test_selection_prefers_interpolating_steps():
    """The lowest validation error at a step that does not fit the training set loses to one that does."""
    run = {"train_error": np.array([[0.1, 0.0]]), "val_error": np.array([[0.05, 0.2]]),
           "train_loss": np.array([[0.5, 0.01]]), "test_error": np.array([[0.05, 0.2]])}
    assert _select([run], [8], [0.1, 1.0])[0]["lr"] == 1.0
    neither = {**run, "train_error": np.array([[0.1, 0.2]])}
    assert _select([neither], [8], [0.1, 1.0])[0]["lr"] == 1.0  # lowest train loss when none fits


def test_verdicts_agree_with_the_claim_and_disagree_with_its_negation():
    widths, train = [4, 8, 16, 32], [0.2, 0.0, 0.0, 0.0]
    se = [0.005] * 4
    falling, rising = [0.4, 0.2, 0.15, 0.1], [0.4, 0.1, 0.15, 0.2]
    assert no_rise_verdict(train, falling, se, 1000)["agrees"]
    assert not no_rise_verdict(train, rising, se, 1000)["agrees"]
    assert not no_rise_verdict([0.2, 0.1, 0.1, 0.1], falling, se, 1000)["agrees"]  # nothing interpolates
    assert interpolation_index([0.2, 0.0, 0.01, 0.0, 0.0]) == 3  # every wider width must fit too
    assert non_increasing_verdict(widths, train, falling, se, 1000)["agrees"]
    u_shape = [0.4, 0.1, 0.05, 0.105]
    assert no_rise_verdict(train, u_shape, se, 1000)["agrees"]
    assert not non_increasing_verdict(widths, train, u_shape, se, 1000)["agrees"]
    params = [w * 10 for w in widths]
    assert norm_growth_verdict(widths, [5.0, 5.1, 5.0, 5.2], params, 1)["agrees"]
    assert not norm_growth_verdict(widths, [float(w) for w in widths], params, 1)["agrees"]
    sgd = [[0.10, 0.11], [0.10, 0.11], [0.10, 0.11]]
    assert path_sgd_verdict(sgd, [[0.09, 0.10], [0.10, 0.11], [0.2, 0.2]], 1000)["agrees"]
    assert not path_sgd_verdict(sgd, [[0.2, 0.21], [0.3, 0.3], [0.09, 0.10]], 1000)["agrees"]


def test_fast_run_numbers(result):
    config = network_size.NetworkSizeConfig.fast()
    assert set(result["datasets"]) == set(network_size.DATASETS)
    assert all(isinstance(value, bool) for value in result["agrees"].values()) and len(result["agrees"]) == 18
    assert result["wall_time_s"] > 0
    for name, study in result["datasets"].items():
        n_classes = study["data"]["n_classes"]
        for method in network_size.METHODS:
            for row, summary in zip(study[method]["widths"], study[method]["summary"], strict=True):
                assert len(row["test_error"]) == config.seeds
                assert summary["test_error"] == pytest.approx(np.mean(row["test_error"]))
                assert 0 <= summary["train_error"] <= 1 and 0 <= summary["test_error"] <= 1
                assert all(e == 0 or 1 <= e <= config.epochs for e in row["epochs_to_zero"])
            # He initialisation: E[path norm²] = Σ_j E[Σ_i W1_ij²] E[Σ_o W2_jo²] = H · 2 · 2C/H = 4C
            widest = study[method]["summary"][-1]
            assert widest["init_path_norm"] == pytest.approx(math.sqrt(4 * n_classes), rel=0.2)
        if name == "digits":
            assert study["sgd"]["summary"][-1]["train_error"] == 0  # the widest fits the training set
            assert study["sgd"]["summary"][-1]["test_error"] < 0.2  # chance is 0.9
    noisy = result["datasets"]["digits_noisy"]["data"]["noisy_fraction"]
    assert noisy == pytest.approx(config.label_noise, abs=0.06)
    assert result["datasets"]["teacher"]["data"]["positive_fraction"] == pytest.approx(0.5, abs=0.01)


def test_save_and_report(result, tmp_path):
    paths = network_size.save(result, tmp_path)
    assert sorted(p.name for p in paths) == ["network_size.json", "network_size.png"]
    stored = json.loads((tmp_path / "network_size.json").read_text(), parse_constant=pytest.fail)
    assert stored["agrees"] == result["agrees"]
    assert (tmp_path / "network_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = network_size.report(result)
    assert "Neyshabur" in text and "| claim | measured | verdict |" in text
    assert text.count("agrees") + text.count("does not agree") >= 12


def test_path_sgd_lower_and_faster_verdicts_follow_the_numbers():
    from nnlift.reproduce.network_size import path_sgd_faster_verdict, path_sgd_lower_verdict

    sgd = [[0.10, 0.11, 0.12], [0.10, 0.10, 0.11], [0.09, 0.10, 0.10]]
    clearly_lower = [[e - 0.02 + 0.001 * i for i, e in enumerate(row)] for row in sgd]
    assert path_sgd_lower_verdict(sgd, clearly_lower) == {"agrees": True, "widths_lower": 3}
    noisy = [[0.08, 0.13, 0.12], [0.12, 0.08, 0.11], [0.09, 0.10, 0.10]]  # lower on average, not beyond 2 se
    assert not path_sgd_lower_verdict(sgd, noisy)["agrees"]
    epochs_sgd = [[0, 5, 6], [4, 4, 5], [3, 3, 4], [3, 2, 3]]  # width 0: one seed never fits
    assert path_sgd_faster_verdict(epochs_sgd, [[2, 2, 2], [2, 3, 3], [2, 2, 2], [4, 4, 4]]) == {
        "agrees": True, "widths_compared": 3, "widths_faster": 2}
    assert not path_sgd_faster_verdict(epochs_sgd, [[9, 9, 9], [9, 9, 9], [9, 9, 9], [1, 1, 1]])["agrees"]
    assert not path_sgd_faster_verdict([[0, 1], [0, 1]], [[1, 1], [1, 1]])["agrees"]  # nothing to compare
