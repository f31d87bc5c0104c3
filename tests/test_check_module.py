"""jb.check_module (torch, layer by layer) and jb.check_layer (a user's jacobian_bp layer): planted mistakes are
found, located entry by entry and named; correct modules and layers pass.  References: torch autograd,
central differences of the forward, SymPy."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jacobian_bp as jb  # noqa: E402
from jacobian_bp.backend.operators import Dense as DenseOp, Diagonal  # noqa: E402
from jacobian_bp.layers.base import Layer  # noqa: E402

nn = torch.nn


class PlantedTanh(torch.autograd.Function):
    """tanh whose backward is wrong at feature 2 (twice the derivative) when ``bad``."""

    bad = True

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        d = (1 - y * y).clone()
        if PlantedTanh.bad:
            d[..., 2] = 2 * d[..., 2]
        return g * d


class HandTanh(nn.Module):
    def forward(self, x):
        return PlantedTanh.apply(x)


class LinearFn(torch.autograd.Function):
    """x Wᵀ + b whose weight gradient is transposed when ``transposed``."""

    transposed = True

    @staticmethod
    def forward(ctx, x, W, b):
        ctx.save_for_backward(x, W)
        return x @ W.T + b

    @staticmethod
    def backward(ctx, g):
        x, W = ctx.saved_tensors
        gW = g.T @ x
        return g @ W, (gW.T if LinearFn.transposed else gW), g.sum(0)


class HandLinear(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, n))
        self.bias = nn.Parameter(torch.randn(n))

    def forward(self, x):
        return LinearFn.apply(x, self.weight, self.bias)


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), HandTanh(), nn.Sequential(HandLinear(4), nn.ReLU()), nn.Linear(4, 3))


@pytest.fixture
def planted(monkeypatch):
    def set_(tanh_bad, lin_T):
        monkeypatch.setattr(PlantedTanh, "bad", tanh_bad)
        monkeypatch.setattr(LinearFn, "transposed", lin_T)
    return set_


def test_planted_tanh_backward_is_found_at_its_entry(planted):
    planted(True, False)
    x, y = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    r = jb.check_module(model(), x, y, nn.CrossEntropyLoss())
    assert not r.ok
    bad = r.first_failure
    assert bad.path == "1" and bad.type_name == "HandTanh" and "central differences" in bad.method
    b = bad.first_wrong
    assert b.block == "input" and b.n_wrong == 1
    (out_i, in_i, got, want), = b.wrong
    assert out_i == (2,) and in_i == (2,)
    # the reference: d tanh(a_2)/d a_2 = 1 - tanh(a_2)^2 at this layer's input, computed here in closed form
    with torch.no_grad():
        a = model().double()[0](x.double())[0]
    assert want == pytest.approx(float(1 - torch.tanh(a[2]) ** 2), rel=1e-8) and got == pytest.approx(2 * want, rel=1e-8)
    assert "scaled by 2" in b.diagnosis and "diagonal" in b.diagnosis
    assert "module '1' (HandTanh)" in str(r) and "FAIL" in str(r)
    assert [c.ok for c in r.layers] == [True, False, True, True, True, True]  # the others, and the loss, pass


def test_transposed_weight_gradient_is_named(planted):
    planted(False, True)
    r = jb.check_module(model(), torch.randn(3, 3), samples=2)
    bad = r.first_failure
    assert bad.path == "2.0" and bad.type_name == "HandLinear"
    wrong = {b.block for b in bad.blocks if not b.ok}
    assert wrong == {"weight"}  # the input and bias blocks of the same module agree
    b = bad.first_wrong
    assert "transposed parameter" in b.diagnosis and b.sample == 0
    # every listed wrong entry is d out[i] / d W[j, k] with j != k (the diagonal of W is unchanged by a transpose)
    assert all(c[0] != c[1] for _, c, _, _ in b.wrong)


def test_correct_model_passes(planted):
    planted(False, False)
    x, y = torch.randn(3, 3), torch.tensor([0, 1, 2])
    r = jb.check_module(model(), x, y, nn.CrossEntropyLoss(), samples=2)
    assert r.ok and r.first_failure is None and "PASS" in str(r)
    assert {c.method.split(" (")[0] for c in r.layers[:1]} == {"explicit Jacobian"}


def test_explicit_jacobian_disagreement_is_arbitrated(monkeypatch):
    """A supported family whose explicit Jacobian is wrong: central differences side with torch autograd."""
    monkeypatch.setattr(jb.Dense, "jac_input", lambda self, a, o, params: DenseOp(-params["W"]))
    torch.manual_seed(1)
    r = jb.check_module(nn.Sequential(nn.Linear(3, 3), nn.Tanh()), torch.randn(2, 3))
    b = r.first_failure.first_wrong
    assert r.first_failure.path == "0" and b.block == "input"
    assert "sign flipped" in b.diagnosis and "the explicit Jacobian is wrong" in b.diagnosis


def test_custom_loss_backward_is_checked():
    class HalfMSE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, o, y):
            ctx.save_for_backward(o, y)
            return ((o - y) ** 2).sum()

        @staticmethod
        def backward(ctx, g):
            o, y = ctx.saved_tensors
            return g * (o - y), None  # planted: the factor 2 is missing

    torch.manual_seed(2)
    r = jb.check_module(nn.Sequential(nn.Linear(2, 3)), torch.randn(2, 2), torch.randn(2, 3),
                        lambda o, y: HalfMSE.apply(o, y))
    assert r.first_failure.path == "loss"
    assert "1/2" in r.first_failure.first_wrong.diagnosis


# ---------------------------------------------------------------------- check_layer
class ShiftMul(Layer):
    """o_i = w_i a_i a_{i+1 mod n}, with a hand-written Jacobian and a planted mistake."""

    kind = "shift_mul"
    parametric = True
    param_names = ("w",)

    def __init__(self, mistake=None):
        super().__init__()
        self.mistake = mistake

    def param_shapes(self):
        return {"w": self.in_shape}

    def init_params(self, rng):
        return {"w": rng.standard_normal(self.in_shape)}

    def forward(self, A, params):
        return params["w"] * A * np.roll(A, -1, axis=-1)

    def jac_input(self, a, o, params):
        n, w = a.size, params["w"]
        J = np.zeros((n, n))
        for i in range(n):
            J[i, i] += w[i] * a[(i + 1) % n]
            J[i, (i + 1) % n] += w[i] * a[i]
        if self.mistake == "transpose":
            J = J.T
        if self.mistake == "entry":
            J[1, 2] *= 3
        return DenseOp(J)

    def jac_params(self, a, o, params, order="C"):
        d = a * np.roll(a, -1)
        return {"w": Diagonal(-d if self.mistake == "sign" else d)}


@pytest.mark.parametrize("mistake, block, words", [
    ("transpose", "input", "transposed"), ("sign", "w", "sign flipped"), ("entry", "input", "1 of 16 entries wrong: scaled by 3"),
])
def test_check_layer_finds_a_planted_wrong_jacobian(mistake, block, words):
    r = jb.check_layer(ShiftMul(mistake), (4,))
    assert not r.ok
    refs = {b.reference for b in r.blocks if not b.ok}
    assert refs == {"central differences", "SymPy"}  # both independent references see it
    b = r.first_wrong
    assert b.block == block and words in b.diagnosis
    if mistake == "entry":
        assert [(o, c) for o, c, _, _ in b.wrong] == [((1,), (2,))]


def test_check_layer_passes_a_correct_layer_and_registered_ones():
    r = jb.check_layer(ShiftMul(), (5,))
    assert r.ok and "SymPy" in r.method
    assert jb.check_layer(jb.Dense(3), (4,)).ok
    assert jb.check_layer(jb.Softmax(), (4,)).ok
    conv = jb.check_layer(jb.Conv2d(2, 2, stride=1, padding=1), (1, 3, 3), use_sympy=False)
    assert conv.ok and {b.block for b in conv.blocks} == {"input", "K", "b"}
