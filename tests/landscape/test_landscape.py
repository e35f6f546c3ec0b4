"""Loss-landscape metrics against dense Hessians, a numpy CKA, and a constructed barrier."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from weightzoo import landscape
from weightzoo.errors import InvalidOptionError, LayoutError
from weightzoo.features import layout_of, load_vector, unflatten

M = 4


def tiny_mlp() -> nn.Module:
    """4 -> 5 -> 3 with tanh: 43 parameters."""
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()


@pytest.fixture
def mlp() -> nn.Module:
    return tiny_mlp()


@pytest.fixture
def rows(mlp) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(M, layout_of(mlp).num_params, generator=gen, dtype=torch.float64)


@pytest.fixture
def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(30, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=gen)
    return [(x[:18], y[:18]), (x[18:], y[18:])]  # unequal sizes: the mean is per sample


def dense_hessian(module, row, batches, loss_fn=F.cross_entropy) -> torch.Tensor:
    layout = layout_of(module)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])

    def loss(w):
        return loss_fn(functional_call(module, unflatten(w, layout), (x,)), y)

    return torch.autograd.functional.hessian(loss, row)


# ------------------------------------------------------------------------------- Hessian
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_top_eigenvalue_matches_each_models_dense_hessian(mlp, rows, batches):
    got = landscape.hessian_top_eigenvalue(mlp, rows, batches, F.cross_entropy, iters=80, tol=1e-9)
    assert got.shape == (M,)
    for m in range(M):
        eig = torch.linalg.eigvalsh(dense_hessian(mlp, rows[m], batches))
        want = eig[eig.abs().argmax()]
        assert got[m].item() == pytest.approx(want.item(), rel=1e-4)
    assert len(set(got.tolist())) == M  # the models really differ


def test_algebraic_top_eigenvalue_when_the_largest_magnitude_is_negative(mlp, rows, batches):
    def negated(out, y):
        return -F.cross_entropy(out, y)

    kwargs = {"hvp": "reverse", "tol": 1e-10}  # reverse: the faster product on tiny models
    magnitude = landscape.hessian_top_eigenvalue(mlp, rows, batches, negated, iters=80, **kwargs)
    # The shifted spectrum's top gap is small: give the second power iteration more steps.
    algebraic = landscape.hessian_top_eigenvalue(
        mlp, rows, batches, negated, which="algebraic", iters=200, **kwargs
    )
    for m in range(M):
        eig = torch.linalg.eigvalsh(dense_hessian(mlp, rows[m], batches, negated))
        assert magnitude[m].item() == pytest.approx(eig[eig.abs().argmax()].item(), rel=1e-4)
        assert algebraic[m].item() == pytest.approx(eig[-1].item(), rel=1e-3, abs=1e-6)
    assert (magnitude < 0).all()  # the shift path was exercised


def test_warns_when_extreme_eigenvalues_cancel(mlp, rows, batches):
    # On the first batch alone model 2's Hessian has eigenvalues -0.487 and +0.468: power
    # iteration alternates between them and settles on a wrong Rayleigh quotient.
    eig = torch.linalg.eigvalsh(dense_hessian(mlp, rows[2], batches[:1]))
    assert (eig[0] + eig[-1]).abs() < 0.05 * eig[-1]
    with pytest.warns(RuntimeWarning, match="did not converge for 1 of 4 models"):
        landscape.hessian_top_eigenvalue(mlp, rows, batches[:1], F.cross_entropy)


def test_loop_reverse_mode_and_chunks_agree_with_vmap(mlp, rows, batches):
    kwargs = {"iters": 30, "tol": 0.0}
    vmapped = landscape.hessian_top_eigenvalue(mlp, rows, batches, F.cross_entropy, **kwargs)
    looped = landscape.hessian_top_eigenvalue(
        mlp, rows, batches, F.cross_entropy, vectorize=False, hvp="reverse", **kwargs
    )
    alone = landscape.hessian_top_eigenvalue(mlp, rows[2:3], batches, F.cross_entropy, **kwargs)
    torch.testing.assert_close(looped, vmapped)
    torch.testing.assert_close(alone[0], vmapped[2])  # shared random start: batch-independent


def test_stacked_dict_equals_rows(mlp, rows, batches):
    stacked = unflatten(rows, layout_of(mlp))
    a = landscape.hessian_trace(mlp, stacked, batches, F.cross_entropy, probes=4)
    b = landscape.hessian_trace(mlp, rows, batches, F.cross_entropy, probes=4)
    torch.testing.assert_close(a, b)


def test_trace_is_exact_for_a_diagonal_hessian():
    # Linear least squares on zero-mean orthogonal inputs: X^T X is diagonal and X^T 1 = 0, so
    # the Hessian is diagonal and every Rademacher probe gives exactly its trace.
    net = nn.Linear(2, 3).double()
    x = torch.tensor([[2.0, 0], [-2, 0], [0, 1], [0, -1]], dtype=torch.float64)
    y = torch.randn(4, 3, dtype=torch.float64)
    rows = torch.randn(3, layout_of(net).num_params, dtype=torch.float64)
    got = landscape.hessian_trace(net, rows, (x, y), F.mse_loss, probes=3)
    for m in range(3):
        hess = dense_hessian(net, rows[m], [(x, y)], F.mse_loss)
        assert torch.count_nonzero(hess - torch.diag(torch.diag(hess))) == 0
        assert got[m].item() == pytest.approx(hess.trace().item(), rel=1e-12)


def test_trace_within_hutchinson_error_of_the_dense_trace(mlp, rows, batches):
    probes = 400
    got = landscape.hessian_trace(
        mlp, rows, batches, F.cross_entropy, probes=probes, probe_batch=50, seed=3
    )
    for m in range(M):
        hess = dense_hessian(mlp, rows[m], batches)
        off = hess - torch.diag(torch.diag(hess))
        std = (2 * off.square().sum() / probes).sqrt().item()  # Rademacher variance
        assert abs(got[m].item() - hess.trace().item()) < 4 * std


# ---------------------------------------------------------------------------------- CKA
def numpy_cka(x: np.ndarray, y: np.ndarray) -> float:
    """HSIC form: tr(K H L H) / sqrt(tr(K H K H) tr(L H L H)), K = X X^T, L = Y Y^T."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T
    return np.trace(k @ h @ l_ @ h) / np.sqrt(np.trace(k @ h @ k @ h) * np.trace(l_ @ h @ l_ @ h))


@pytest.mark.parametrize(("n", "d1", "d2"), [(40, 3, 5), (6, 20, 30)])  # feature and Gram path
def test_cka_matches_numpy_reference(rng, n, d1, d2):
    x = rng.normal(size=(n, d1))
    y = x[:, :1] ** 2 + rng.normal(size=(n, d2))
    assert landscape.cka(x, y).item() == pytest.approx(numpy_cka(x, y), rel=1e-10)


def test_cka_identity_orthogonal_and_scale_invariance(rng):
    x = rng.normal(size=(50, 8))
    y = np.tanh(x @ rng.normal(size=(8, 6))) + 0.3 * rng.normal(size=(50, 6))
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    base = landscape.cka(x, y).item()
    assert landscape.cka(x, x).item() == pytest.approx(1.0, abs=1e-12)
    assert landscape.cka(x @ q, y).item() == pytest.approx(base, rel=1e-10)
    assert landscape.cka(7.5 * x, 0.01 * y).item() == pytest.approx(base, rel=1e-10)
    assert 0 < base < 1


def test_batched_cka_equals_each_pair_and_nan_for_constant(rng):
    a, b = rng.normal(size=(3, 20, 4)), rng.normal(size=(3, 20, 7))
    got = landscape.cka(a, b)
    assert got.shape == (3,)
    for i in range(3):
        assert got[i].item() == pytest.approx(numpy_cka(a[i], b[i]), rel=1e-10)
    assert torch.isnan(landscape.cka(np.ones((5, 2)), rng.normal(size=(5, 2))))


def test_cka_bad_shapes():
    with pytest.raises(InvalidOptionError, match="same n"):
        landscape.cka(np.zeros((5, 2)), np.zeros((6, 2)))
    with pytest.raises(InvalidOptionError, match="at least 2"):
        landscape.cka(np.zeros((1, 2)), np.zeros((1, 2)))


def test_layer_activations_match_each_loaded_module(mlp, rows):
    x = torch.randn(7, 4, dtype=torch.float64)
    acts = landscape.layer_activations(mlp, rows, x, layer="1")
    outs = landscape.layer_activations(mlp, rows, x)
    assert acts.shape == (M, 7, 5) and outs.shape == (M, 7, 3)
    for m in range(M):
        one = load_vector(tiny_mlp(), rows[m], layout_of(mlp))
        torch.testing.assert_close(acts[m], torch.tanh(one[0](x)))
        torch.testing.assert_close(outs[m], one(x).detach())
    with pytest.raises(landscape.UnknownLayerError, match="its layers: 0, 1, 2"):
        landscape.layer_activations(mlp, rows, x, layer="fc9")


def test_cka_between_a_model_and_itself_is_one(mlp, rows):
    x = torch.randn(12, 4, dtype=torch.float64)
    same = landscape.cka_between(mlp, rows, rows, x, layer="1")
    other = landscape.cka_between(mlp, rows, rows.flip(0), x, layer="1")
    torch.testing.assert_close(same, torch.ones(M, dtype=torch.float64))
    assert (other < 1 - 1e-6).all()


# ---------------------------------------------------------------------- mode connectivity
def test_barrier_and_signed_mc_by_hand():
    t = np.linspace(0, 1, 3)
    values = np.array([[1.0, 3.0, 1.0], [1.0, 0.5, 1.0], [0.0, 1.0, 2.0], [0.0, 3.0, 2.0]])
    np.testing.assert_allclose(landscape.barrier(values, t), [2.0, 0.0, 0.0, 2.0])
    # mc = mean of the ends minus the value farthest from it (an endpoint on a monotone path).
    np.testing.assert_allclose(landscape.signed_mc(values), [-2.0, 0.5, 1.0, -2.0])


def xor_task() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[1.0, 1], [-1, -1], [1, -1], [-1, 1]], dtype=torch.float64)
    x = centres.repeat(16, 1) + 0.2 * torch.randn(64, 2, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1]).repeat(16)
    return x, y


def trained_xor_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    x, y = xor_task()
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net


def permuted(net: nn.Module, perm: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same function with its hidden units reordered: a far-away twin."""
    sd = {k: v.detach().clone() for k, v in net.state_dict().items()}
    sd["0.weight"], sd["0.bias"], sd["2.weight"] = (
        sd["0.weight"][perm],
        sd["0.bias"][perm],
        sd["2.weight"][:, perm],
    )
    return sd


def accuracy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out.argmax(-1) == y).double().mean()


def test_bezier_curve_lowers_the_barrier_between_permuted_twins():
    nets = [trained_xor_net(seed) for seed in (0, 1)]
    layout = layout_of(nets[0])
    perm = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0])
    a = torch.stack([torch.cat([v.reshape(-1) for v in n.state_dict().values()]) for n in nets])
    b = torch.stack([torch.cat([v.reshape(-1) for v in permuted(n, perm).values()]) for n in nets])
    data = xor_task()
    options = landscape.LandscapeOptions(steps=60, lr=0.2)
    result = landscape.mode_connectivity(
        nets[0], a, b, data, F.cross_entropy, accuracy_fn=accuracy, options=options
    )
    assert result.linear_loss.shape == result.curve_loss.shape == (2, 11)
    # Same function at both ends, so the endpoints' losses agree and the paths start there.
    np.testing.assert_allclose(result.linear_loss[:, 0], result.linear_loss[:, -1], rtol=1e-9)
    np.testing.assert_allclose(result.curve_loss[:, [0, -1]], result.linear_loss[:, [0, -1]])
    assert (result.linear_barrier > 0.1).all()
    assert (result.curve_barrier < result.linear_barrier).all()
    assert (result.curve_barrier < 0.25 * result.linear_barrier).all()
    assert (result.mc < 0).all() and (result.mc > -result.linear_barrier).all()
    assert result.curve_error is not None and result.curve_error.shape == (2, 11)
    # Each pair trains its own control point: pair 1 alone gives the same curve.
    alone = landscape.mode_connectivity(
        nets[0], a[1:], b[1:], data, F.cross_entropy, options=options
    )
    np.testing.assert_allclose(alone.curve_loss[0], result.curve_loss[1], rtol=1e-8)
    assert set(result.control) == set(layout.names)


def test_no_curve_training_gives_the_linear_path(mlp, rows, batches):
    linear = landscape.LandscapeOptions(steps=0)
    result = landscape.mode_connectivity(
        mlp, rows, rows.flip(0), batches, F.cross_entropy, options=linear
    )
    np.testing.assert_allclose(result.curve_loss, result.linear_loss, rtol=1e-12)
    assert result.mc_error is None


# ------------------------------------------------------------------------ landscape_metrics
def test_landscape_metrics_agree_with_the_functions_and_chunks(mlp, rows, batches):
    names = ("hessian_top", "hessian_trace", "cka", "linear_barrier", "mc", "mc_error")
    options = landscape.LandscapeOptions(iters=15, probes=6, steps=5, points=5)
    kwargs = {"partners": rows.flip(0), "accuracy_fn": accuracy}
    whole = landscape.landscape_metrics(
        mlp, rows.numpy(), batches, F.cross_entropy, names, options=options, **kwargs
    )
    parts = landscape.landscape_metrics(
        mlp, rows, batches, F.cross_entropy, names, options=options.replace(chunk=3), **kwargs
    )
    assert list(whole) == list(names)
    for name in names:
        assert whole[name].shape == (M,) and whole[name].dtype == np.float64
        np.testing.assert_allclose(parts[name], whole[name], rtol=1e-9, err_msg=name)
    top = landscape.hessian_top_eigenvalue(mlp, rows, batches, F.cross_entropy, iters=15)
    np.testing.assert_allclose(whole["hessian_top"], top.numpy())
    np.testing.assert_allclose(whole["cka"][[0, 3]], whole["cka"][[3, 0]])  # symmetric pairs


def test_landscape_metrics_bad_input(mlp, rows, batches):
    with pytest.raises(landscape.UnknownMetricError, match="known: hessian_top, hessian_trace"):
        landscape.landscape_metrics(mlp, rows, batches, F.cross_entropy, ["sharpness"])
    with pytest.raises(InvalidOptionError, match="partners"):
        landscape.landscape_metrics(mlp, rows, batches, F.cross_entropy, ["cka"])
    with pytest.raises(InvalidOptionError, match="accuracy_fn"):
        landscape.landscape_metrics(
            mlp, rows, batches, F.cross_entropy, ["mc_error"], partners=rows
        )
    with pytest.raises(landscape.RowWidthError, match=r"43 values per row") as info:
        landscape.landscape_metrics(mlp, rows[:, :40], batches, F.cross_entropy)
    assert isinstance(info.value, InvalidOptionError | LayoutError | ValueError)
    with pytest.raises(landscape.RowWidthError):
        landscape.hessian_trace(mlp, rows[:, :-1], batches, F.cross_entropy)
    with pytest.raises(InvalidOptionError, match="one model per row"):
        landscape.landscape_metrics(mlp, rows, batches, F.cross_entropy, ["cka"], partners=rows[:2])
    with pytest.raises(InvalidOptionError, match="which"):
        landscape.hessian_top_eigenvalue(mlp, rows, batches, F.cross_entropy, which="smallest")


@pytest.mark.filterwarnings("ignore:power iteration did not converge")  # 3 steps only
def test_zoo_architectures_run(rng):
    """A CNN-s (conv, max-pool) under vmap and an MLDS GRU network (looped, reverse mode)."""
    from weightzoo.architectures import image
    from weightzoo.families.mlds import model as mlds

    cnn = image.cnn_small(1, 10)
    layout = layout_of(cnn)
    cnn_rows = 0.1 * torch.randn(2, layout.num_params)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    vmapped = landscape.hessian_top_eigenvalue(cnn, cnn_rows, (x, y), F.cross_entropy, iters=3)
    looped = landscape.hessian_top_eigenvalue(
        cnn, cnn_rows, (x, y), F.cross_entropy, iters=3, vectorize=False
    )
    torch.testing.assert_close(vmapped, looped, rtol=1e-4, atol=1e-6)

    net = mlds.MLDSNet()
    rnn_rows = torch.stack([torch.cat([p.reshape(-1) for p in net.state_dict().values()])] * 2)
    rnn_rows[1] *= 0.5
    seq = torch.randn(3, 4, net.config.input_size)
    target = torch.randn(3, 4, net.config.output_size)
    options = landscape.LandscapeOptions(iters=3, probes=2)
    got = landscape.landscape_metrics(net, rnn_rows, (seq, target), F.mse_loss, options=options)
    assert np.isfinite(got["hessian_top"]).all() and got["hessian_top"][0] != got["hessian_top"][1]


def test_batchnorm_buffers_are_fixed_and_the_module_mode_restored():
    """Rows carry BatchNorm running statistics: used as given, never differentiated."""
    torch.manual_seed(2)  # extreme eigenvalues well apart in magnitude for both models
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Tanh(), nn.Flatten(), nn.Linear(8, 2)
    ).double()
    layout = layout_of(net)
    assert "1.running_var" in layout
    rows = torch.randn(2, layout.num_params, dtype=torch.float64)
    var = layout["1.running_var"]
    rows[:, var.offset : var.stop] = torch.rand(2, 2, dtype=torch.float64) + 0.5
    x, y = torch.randn(6, 1, 4, 4, dtype=torch.float64), torch.randint(0, 2, (6,))
    net.train()
    got = landscape.hessian_top_eigenvalue(net, rows, (x, y), F.cross_entropy, iters=100, tol=0)
    assert net.training and net[1].training  # the caller's mode is back
    for m in range(2):
        eig = torch.linalg.eigvalsh(params_only_hessian(net, rows[m], x, y))
        assert got[m].item() == pytest.approx(eig[eig.abs().argmax()].item(), rel=1e-3)


def params_only_hessian(net, row, x, y) -> torch.Tensor:
    """Dense Hessian over the parameters, with the row's buffers held fixed."""
    tensors = unflatten(row, layout_of(net))
    names = [name for name, _ in net.named_parameters()]
    buffers = {k: v for k, v in tensors.items() if k not in names}
    sizes = [tensors[n].numel() for n in names]

    def loss(w):
        parts = dict(zip(names, torch.split(w, sizes), strict=True))
        params = {n: parts[n].reshape(tensors[n].shape) for n in names}
        return F.cross_entropy(functional_call(net.eval(), (params, buffers), (x,)), y)

    flat = torch.cat([tensors[n].reshape(-1) for n in names])
    return torch.autograd.functional.hessian(loss, flat)


@pytest.mark.filterwarnings("ignore:power iteration did not converge")  # 3 steps only
def test_example_script_on_a_zoo(tmp_path, monkeypatch, capsys):
    """examples/landscape_metrics.py: rows of a zoo -> build_model -> metrics per row."""
    import runpy
    from pathlib import Path

    from weightzoo.architectures import build_model
    from weightzoo.features import flatten
    from weightzoo.storage import ZooWriter, shard_file_name

    spec = {
        "name": "mini-trajectory",
        "family": "trajectory",
        "architecture": "mlp",
        "dataset": "digits",
        "image_size": 14,
        "in_channels": 1,
        "num_classes": 10,
        "activations": ["sigmoid"],
        "hidden": 10,
        "loss": "mse",
    }
    nets = []
    for seed in range(3):
        torch.manual_seed(seed)
        nets.append(build_model(spec))
    layout = layout_of(nets[0])
    weights = torch.stack([flatten(n, layout) for n in nets])[:, None].numpy()
    writer = ZooWriter(
        tmp_path / "zoo",
        name=spec["name"],
        family="trajectory",
        spec=spec,
        layout=layout,
        epochs=[0],
        metrics=["train_loss"],
        stats_names=["mean"],
        num_models=3,
    )
    writer.write_shard(
        shard_file_name("train", 0),
        split="train",
        models=(0, 3),
        epochs=[0],
        weights=weights,
        stats=weights.mean(-1, keepdims=True),
        metrics={"train_loss": np.array([[0.1], [0.2], [0.3]])},
        columns={"model_id": np.arange(3)},
    )
    writer.finish()
    script = Path(__file__).resolve().parents[2] / "examples" / "landscape_metrics.py"
    argv = [str(tmp_path / "zoo"), "--batches", "1", "--iters", "3", "--probes", "2"]
    monkeypatch.setattr("sys.argv", [script.name, *argv, "--steps", "2"])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "mini-trajectory: 3 models of split 'train' at epoch last"
    assert len(out) == 5 and out[2].split()[:2] == ["0", "0.1000"]


def test_read_only_numpy_rows_and_numpy_data(mlp, rows, batches):
    frozen = rows.numpy().copy()
    frozen.flags.writeable = False  # as a memory-mapped shard gives them
    x, y = batches[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # "the NumPy array is not writable"
        got = landscape.hessian_trace(mlp, frozen, (x.numpy(), y.numpy()), F.cross_entropy)
    want = landscape.hessian_trace(mlp, rows, [(x, y)], F.cross_entropy)
    torch.testing.assert_close(got, want)
