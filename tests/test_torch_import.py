"""jb.from_torch: a user's nn.Sequential as a Network with torch's names; gradients and J_θ z[L] against
torch autograd run on the user's module itself (float64)."""
from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jacobian_bp as jb  # noqa: E402
from jacobian_bp.errors import SpecError  # noqa: E402

nn = torch.nn


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def torch_grads(module, X, y, loss):
    """loss(module(X), y).backward() on a float64 copy: torch's .grad of every parameter, by name."""
    m = copy.deepcopy(module).double()
    m.zero_grad()
    loss(m(X.double()), y).backward()
    return {n: p.grad.numpy().copy() for n, p in m.named_parameters()}


def torch_jacobian_theta(module, x):
    """J_θ of the output of one sample by torch.func.jacrev on the module, columns in named_parameters order."""
    m = copy.deepcopy(module).double()
    params = {k: v.detach() for k, v in m.named_parameters()}
    J = torch.func.jacrev(lambda p: torch.func.functional_call(m, p, (x.double()[None],))[0])(params)
    n_out = next(iter(J.values())).shape[0]
    return np.concatenate([J[k].reshape(n_out, -1).numpy() for k in params], axis=1)


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, stride=2), nn.ReLU(),
        nn.Conv2d(3, 4, (2, 3), padding=(1, 0), dilation=(1, 2), bias=False), nn.Tanh(),
        nn.MaxPool2d(2), nn.Sequential(nn.Flatten(), nn.Linear(4 * 2 * 1, 6)), nn.GELU(), nn.Linear(6, 5))


def mlp():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 6), nn.Sigmoid(), nn.Linear(6, 5), nn.LeakyReLU(0.1),
                         nn.Sequential(nn.Linear(5, 5), nn.ELU(0.7)), nn.Linear(5, 3), nn.Softplus(), nn.Linear(3, 3))


def test_cnn_gradients_and_jacobian_equal_torch_autograd_with_torch_names():
    m = cnn()
    X = torch.randn(4, 2, 7, 13, dtype=torch.float64)
    y = torch.tensor([0, 4, 2, 1])
    loss = nn.CrossEntropyLoss()
    tn = jb.from_torch(m, X, loss=loss)
    g = tn.gradient_dict(X, y)
    ref = torch_grads(m, X, y, loss)
    assert list(g) == [n for n, _ in m.named_parameters()]  # torch's names, torch's order
    for n in ref:
        assert g[n].shape == ref[n].shape
        assert rel(g[n], ref[n]) <= 1e-12, n
    for n in ref:  # the operator sweep too
        assert rel(tn.gradient_dict(X, y, method="operator")[n], ref[n]) <= 1e-12
    J = tn.jacobian_theta(X[1])
    Jt = torch_jacobian_theta(m, X[1])
    assert J.shape == Jt.shape and rel(J, Jt) <= 1e-12
    assert [b for b, _ in tn.theta_blocks] == [n for n, _ in m.named_parameters()]
    assert tn.name_map["0.weight"] == "K1" and tn.name_map["5.1.weight"] == "W3"
    with torch.no_grad():
        assert rel(tn.loss_value(X, y), float(loss(copy.deepcopy(m).double()(X), y))) <= 1e-12


def test_mlp_nested_sequential_mse_and_vector_order():
    m = mlp()
    X = torch.randn(5, 4, dtype=torch.float64)
    Y = torch.randn(5, 3, dtype=torch.float64)
    loss = nn.MSELoss()
    tn = jb.from_torch(m, X, loss=loss)
    ref = torch_grads(m, X, Y, loss)
    assert set(tn.gradient_dict(X, Y)) == set(ref)
    flat_ref = np.concatenate([ref[n].ravel() for n, _ in m.named_parameters()])
    assert rel(tn.gradient_vector(X, Y), flat_ref) <= 1e-12
    assert rel(tn.jacobian_theta(X[0]), torch_jacobian_theta(m, X[0])) <= 1e-12
    # sum reduction follows torch's too
    ref_sum = torch_grads(m, X, Y, nn.MSELoss(reduction="sum"))
    g_sum = jb.from_torch(m, X, loss=nn.MSELoss(reduction="sum")).gradient_dict(X, Y)
    assert all(rel(g_sum[n], ref_sum[n]) <= 1e-12 for n in ref_sum)


def test_other_conventions_still_answer_in_torch_shapes():
    m = mlp()
    X = torch.randn(3, 4, dtype=torch.float64)
    Y = torch.randn(3, 3, dtype=torch.float64)
    ref = torch_grads(m, X, Y, nn.MSELoss(reduction="sum"))
    # Damadi: W stored in_out, θ reversed, reduction sum, MSE ‖·‖² summed over outputs: torch's sum-MSE
    tn = jb.from_torch(m, X, loss="mse", convention="damadi")
    g = tn.gradient_dict(X, Y)
    assert tn.params["W1"].shape == (4, 6)  # the convention's layout inside ...
    assert all(g[n].shape == ref[n].shape and rel(g[n], ref[n]) <= 1e-12 for n in ref)  # ... torch's outside


def test_bce_with_logits_and_avgpool():
    torch.manual_seed(3)
    m = nn.Sequential(nn.AvgPool2d(2, stride=1, padding=1), nn.Conv2d(1, 2, 2), nn.Flatten(), nn.Dropout(0.5),
                      nn.Linear(2 * 4 * 4, 3)).eval()
    X = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    Y = torch.randint(0, 2, (3, 3)).double()
    loss = nn.BCEWithLogitsLoss()
    tn = jb.from_torch(m, X, loss=loss)
    ref = torch_grads(m, X, Y, loss)
    g = tn.gradient_dict(X, Y)
    assert all(rel(g[n], ref[n]) <= 1e-12 for n in ref)
    assert tn.network.pre  # the pooling before the first parametric layer


def test_verify_report_speaks_torch_names():
    m = mlp()
    X = torch.randn(3, 4, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    report = jb.from_torch(m, X, loss=nn.CrossEntropyLoss()).verify(X, y)
    assert report.passed and "torch autograd" not in report.skipped
    assert {e.block for e in report.errors if e.method == "torch autograd"} == {n for n, _ in m.named_parameters()}


class MyBlock(nn.Module):
    def forward(self, x):
        return x * 2


@pytest.mark.parametrize("module, path, tname", [
    (nn.Sequential(nn.Linear(3, 2), MyBlock()), "1", "MyBlock"),
    (nn.Sequential(nn.Linear(3, 2), nn.Sequential(nn.ReLU(), nn.Hardswish())), "1.1", "Hardswish"),
])
def test_unsupported_module_refused_naming_path_type_and_supported(module, path, tname):
    with pytest.raises(SpecError) as e:
        jb.from_torch(module, torch.randn(2, 3))
    msg = str(e.value)
    assert f"'{path}'" in msg and tname in msg and "supported:" in msg and "Conv2d" in msg and "Linear" in msg


@pytest.mark.parametrize("module, x, words", [
    (nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Flatten(), nn.Linear(2, 1)), torch.randn(1, 2, 3, 3), "groups"),
    (nn.Sequential(nn.Conv2d(1, 1, 2), nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(), nn.Linear(1, 1)),
     torch.randn(1, 1, 4, 4), "ceil_mode"),
    (nn.Sequential(nn.Linear(3, 2), nn.Softmax(dim=0)), torch.randn(2, 3), "dim"),
    (nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.3)), torch.randn(2, 3), "eval"),
    (nn.Sequential(nn.Conv2d(1, 1, 2), nn.Linear(3, 1)), torch.randn(1, 1, 4, 4), "Flatten"),
])
def test_unsupported_options_refused(module, x, words):
    with pytest.raises(SpecError, match=words):
        jb.from_torch(module, x)


def test_subclass_of_a_torch_layer_is_a_users_module():
    class MyLinear(nn.Linear):
        def forward(self, x):
            return super().forward(x) ** 2

    with pytest.raises(SpecError, match="MyLinear"):
        jb.from_torch(nn.Sequential(MyLinear(3, 2)), torch.randn(2, 3))


def test_softmax_output_with_cross_entropy_on_probabilities_and_integer_labels():
    torch.manual_seed(4)
    m = nn.Sequential(nn.Linear(3, 4), nn.Identity(), nn.Tanh(), nn.Linear(4, 3), nn.Softmax(dim=-1))
    X = torch.randn(5, 3, dtype=torch.float64)
    y = torch.tensor([2, 0, 1, 1, 0])
    tn = jb.from_torch(m, X, loss="cross_entropy")
    assert tn.network.matched  # softmax + cross entropy: Damadi's closed-form delta
    ref = torch_grads(m, X, y, lambda p, t: F_nll(p, t))
    g = tn.gradient_dict(X, y)
    assert all(rel(g[n], ref[n]) <= 1e-12 for n in ref)


def F_nll(p, t):
    return torch.nn.functional.nll_loss(torch.log(p), t)


def _reordered_family(with_map: bool):
    """A Linear family whose canonical parameters come in another order than torch's (b before W): the default
    one-for-one map must refuse it loudly; a family-defined adjoint map (torch_gradients) makes it work."""
    class ReorderedDense(jb.Dense):
        torch_module_types = ("Linear",)

        @classmethod
        def from_torch_module(cls, module, in_shape):
            kwargs, params = jb.Dense.from_torch_module(module, in_shape)
            return kwargs, {"b": params["b"], "W": params["W"]}

    if with_map:
        ReorderedDense.torch_gradients = classmethod(lambda cls, module, g: {"weight": g["W"], "bias": g["b"]})
    return ReorderedDense


@pytest.mark.parametrize("with_map", [False, True])
def test_family_defined_gradient_map(monkeypatch, with_map):
    from jacobian_bp.layers.registry import REGISTRY

    monkeypatch.setattr(jb.Dense, "torch_module_types", ())
    monkeypatch.setitem(REGISTRY, "test_reordered_dense", _reordered_family(with_map))
    m = mlp()
    X = torch.randn(3, 4, dtype=torch.float64)
    Y = torch.randn(3, 3, dtype=torch.float64)
    if not with_map:
        with pytest.raises(SpecError, match="torch_gradients"):
            jb.from_torch(m, X, loss=nn.MSELoss())
        return
    tn = jb.from_torch(m, X, loss=nn.MSELoss())
    ref = torch_grads(m, X, Y, nn.MSELoss())
    g = tn.gradient_dict(X, Y)
    assert list(g) == list(ref) and all(rel(g[n], ref[n]) <= 1e-12 for n in ref)
    assert rel(tn.jacobian_theta(X[0]), torch_jacobian_theta(m, X[0])) <= 1e-12


def test_hand_off_to_another_family_and_forward_check(monkeypatch):
    """A family may hand a module to another (3-tuple); the import checks every layer's output against torch's."""
    from jacobian_bp.errors import DataError

    monkeypatch.setattr(jb.Tanh, "from_torch_module", classmethod(lambda cls, module, in_shape: ({}, {}, jb.Sigmoid)))
    m = nn.Sequential(nn.Linear(3, 2), nn.Tanh())
    with pytest.raises(DataError, match="module '1' \\(Tanh\\) imported as sigmoid does not reproduce"):
        jb.from_torch(m, torch.randn(2, 3))
    tn = jb.from_torch(m, torch.randn(2, 3), check=False)
    assert tn.network.layers[1].kind == "sigmoid"
