r"""Issue #12, "one file per change": four extensions made from this test file alone.

No file of the package is edited for any of them; each is checked against an oracle that does not
use the code it tests (torch autograd written here, a closed form, float64 central differences).

a. **A layer** (:class:`RowNorm`, a LayerNorm sketch) -- a class with the layer protocol of
   :mod:`jacobian_bp.layers.base` and one registration, ``register("row_norm_sketch")``.  In a
   package file that is the decorator ``@register("row_norm_sketch")`` above the class; here the
   same decorator is applied by a module fixture and undone after the module, because the other test
   modules parametrize over the registry when they are collected (which happens before any test
   runs) and must not see a layer that exists only here.  It then works in a spec, in the chain,
   operator and per-sample gradients, in forward mode, in the full ``J_θ z[L]`` and ``J_x z[L]``, in
   ``verify`` with the torch oracle, and passes the layer-protocol contract tests.
b. **A convention** -- one :class:`~jacobian_bp.engine.conventions.Convention` value
   (``get_convention("pytorch").replace(...)``), named in a spec once it is in ``PRESETS``.
c. **A notation** -- one :class:`~jacobian_bp.render.notation.Notation` value, passed to
   :func:`~jacobian_bp.render.derivation.derivation_document`.
d. **A textbook document** -- one :class:`~jacobian_bp.documents.model.Document` and its entries,
   registered as :mod:`jacobian_bp.documents.catalogue` registers its sources (see
   :func:`nielsen_document` for what a real new document takes).
"""
from __future__ import annotations

import re
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.func import jacrev  # noqa: E402

import test_layer_protocol as protocol  # noqa: E402  (the contract checks, run on RowNorm below)
from jacobian_bp import verify  # noqa: E402
from jacobian_bp.backend.operators import Dense as DenseOp, Diagonal, Identity, Product  # noqa: E402
from jacobian_bp.claims import Claim, Setting, check  # noqa: E402
from jacobian_bp.documents import catalogue as catalogue_module  # noqa: E402
from jacobian_bp.documents.catalogue import catalogue, run_catalogue  # noqa: E402
from jacobian_bp.documents.errata import build_errata  # noqa: E402
from jacobian_bp.documents.model import DOCUMENTS, Document, Entry, register_document  # noqa: E402
from jacobian_bp.engine.conventions import PRESETS, get_convention  # noqa: E402
from jacobian_bp.errors import ShapeError, SpecError  # noqa: E402
from jacobian_bp.layers.base import Layer  # noqa: E402
from jacobian_bp.layers.registry import REGISTRY, register  # noqa: E402
from jacobian_bp.render.derivation import derivation_document  # noqa: E402
from jacobian_bp.render.entries import format_number  # noqa: E402
from jacobian_bp.render.notation import Notation  # noqa: E402
from jacobian_bp.spec import load_spec  # noqa: E402
from jacobian_bp.uses.convert import convert_gradient, convert_theta  # noqa: E402
from jacobian_bp.uses.lazy import BatchJacobianOperator  # noqa: E402

F = torch.nn.functional


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


# ============================================================================ a. a new layer
class RowNorm(Layer):
    r"""LayerNorm of a vector (sketch): :math:`\mathbf y = \boldsymbol\gamma\odot\hat{\mathbf x} + \boldsymbol\beta`.

    With :math:`\mu = \tfrac1n\mathbf 1^\top\mathbf x`, :math:`\sigma = \sqrt{\tfrac1n\|\mathbf x - \mu\mathbf 1\|^2
    + \varepsilon}` (the biased variance, as ``torch.nn.functional.layer_norm``) and
    :math:`\hat{\mathbf x} = (\mathbf x - \mu\mathbf 1)/\sigma`:

    * :math:`\mathbf J_{\mathbf x}\mathbf y = \operatorname{diag}(\boldsymbol\gamma/\sigma)\,
      (\mathbf I - \tfrac1n\mathbf 1\mathbf 1^\top - \tfrac1n\hat{\mathbf x}\hat{\mathbf x}^\top)`
      (Ba, Kiros, Hinton, *Layer normalization*, 2016; differentiate :math:`\hat{\mathbf x}`:
      :math:`\partial\sigma/\partial\mathbf x = \hat{\mathbf x}/n`);
    * :math:`\mathbf J_{\boldsymbol\gamma}\mathbf y = \operatorname{diag}\hat{\mathbf x}`,
      :math:`\mathbf J_{\boldsymbol\beta}\mathbf y = \mathbf I_n`.

    It has parameters, so it opens a stage of the network (``parametric = True``): ``γ`` and ``β`` of
    stage ``l`` are named ``gamma{l}`` and ``beta{l}`` in θ.
    """

    kind = "row_norm_sketch"
    parametric = True
    param_names = ("gamma", "beta")

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (0 < eps < np.inf):
            raise SpecError(f"row_norm_sketch layer: eps must be a positive number, received {eps!r}")
        self.eps = float(eps)

    def build(self, in_shape, convention=None):
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) != 1 or in_shape[0] < 2:
            raise ShapeError(f"{self._name()}: expected a flat input vector (n,) with n >= 2, received shape {in_shape}")
        self.in_shape = self.out_shape = in_shape
        return self.out_shape

    def param_shapes(self):
        n = self.in_shape[0]
        return {"gamma": (n,), "beta": (n,)}

    def init_params(self, rng):
        n = self.in_shape[0]
        return {"gamma": 1.0 + 0.2 * rng.standard_normal(n), "beta": 0.1 * rng.standard_normal(n)}

    def _normalized(self, A):
        centred = A - A.mean(axis=-1, keepdims=True)
        sigma = np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + self.eps)
        return centred / sigma, sigma

    def forward(self, A, params):
        xhat, _ = self._normalized(A)
        return xhat * params["gamma"] + params["beta"]

    def jac_input(self, a, o, params):
        n = a.shape[0]
        xhat, sigma = self._normalized(np.asarray(a, dtype=float))
        projection = np.eye(n) - 1.0 / n - np.outer(xhat, xhat) / n
        return Product([Diagonal(params["gamma"] / sigma[0]), DenseOp(projection)])

    def jac_params(self, a, o, params, order="C"):
        xhat, _ = self._normalized(np.asarray(a, dtype=float))
        return {"gamma": Diagonal(xhat), "beta": Identity(self.in_shape[0])}  # vectors: both vec orders agree

    def torch_forward(self, A, params):
        return F.layer_norm(A, self.in_shape, params["gamma"], params["beta"], eps=self.eps)

    @classmethod
    def protocol_examples(cls):
        return [({}, (5,)), ({"eps": 0.5}, (3,))]

    def describe(self):
        return f"row norm {self.in_shape[0] if self.in_shape else '?'} (sketch)"


@pytest.fixture(scope="module", autouse=True)
def row_norm_registered():
    """``@register("row_norm_sketch")`` on :class:`RowNorm` for this module only (see the module docstring)."""
    assert "row_norm_sketch" not in REGISTRY
    register("row_norm_sketch")(RowNorm)
    yield RowNorm
    del REGISTRY["row_norm_sketch"]


ROW_NORM_SPEC = {
    "name": "row-norm-mlp",
    "input": 4,
    "layers": [{"type": "dense", "out_features": 5}, {"type": "tanh"},
               {"type": "row_norm_sketch"}, {"type": "tanh"},
               {"type": "dense", "out_features": 3}, {"type": "softmax"}],
    "loss": "cross_entropy",
    "data": {"batch": 4, "seed": 3},
    "params": {"seed": 2},
}

# canonical (torch) shapes per parameter, written from the spec above
ROW_NORM_PARAMS = [("W1", (5, 4)), ("b1", (5,)), ("gamma2", (5,)), ("beta2", (5,)), ("W3", (3, 5)), ("b3", (3,))]


def row_norm_theta_layout(preset):
    """θ order and flattening of the canonical tensors, from the conventions table (not read from the network).

    ``pytorch``: forward, rows stacked.  ``damadi``: stages L..1; ``W`` is stored ``in×out`` with its
    columns stacked, which is the canonical ``out×in`` rows stacked; the vectors are as they are."""
    if preset == "pytorch":
        return ROW_NORM_PARAMS
    stage = {"W1": 1, "b1": 1, "gamma2": 2, "beta2": 2, "W3": 3, "b3": 3}
    return sorted(ROW_NORM_PARAMS, key=lambda p: -stage[p[0]])


def torch_params(theta, layout):
    out, off = {}, 0
    for name, shape in layout:
        size = int(np.prod(shape))
        out[name] = theta[off:off + size].reshape(shape)
        off += size
    return out


def torch_logits(x, P, eps=1e-5):
    """z[L] of the spec, written with torch.nn.functional (LayerNorm with weight and bias)."""
    h = torch.tanh(F.linear(x, P["W1"], P["b1"]))
    h = torch.tanh(F.layer_norm(h, (5,), P["gamma2"], P["beta2"], eps=eps))
    return F.linear(h, P["W3"], P["b3"])


def row_norm_setup(preset):
    spec = load_spec(dict(ROW_NORM_SPEC, convention=preset))
    net = spec.network
    p = spec.params()
    X, Y = spec.data()
    layout = row_norm_theta_layout(preset)
    return net, p, X, Y, layout


def test_the_spec_loads_and_the_layer_opens_a_stage():
    net, p, X, Y, layout = row_norm_setup("pytorch")
    assert isinstance(net.stages[1].layer, RowNorm) and [st.layer.kind for st in net.stages] == ["dense", "row_norm_sketch", "dense"]
    assert [e.name for e in net.entries] == [n for n, _ in layout]
    assert net.n_params == sum(int(np.prod(s)) for _, s in layout)
    # the spec checks the constructor's keywords like any other layer's
    with pytest.raises(SpecError, match=r"layers\[1\] \(row_norm_sketch\): unknown key\(s\) width; allowed: eps"):
        load_spec(dict(ROW_NORM_SPEC, layers=[{"type": "dense", "out_features": 5}, {"type": "row_norm_sketch", "width": 3},
                                              {"type": "dense", "out_features": 3}]))
    with pytest.raises(SpecError, match="eps must be a positive number"):
        load_spec(dict(ROW_NORM_SPEC, layers=[{"type": "dense", "out_features": 5}, {"type": "row_norm_sketch", "eps": -1.0},
                                              {"type": "dense", "out_features": 3}]))


@pytest.mark.parametrize("preset", ["pytorch", "damadi"])
def test_row_norm_gradients_equal_torch_autograd(preset):
    net, p, X, Y, layout = row_norm_setup(preset)
    theta = net.pack(p)
    Xt, Yt = torch.tensor(X), torch.tensor(Y)

    def per_sample_losses(t):
        z = torch_logits(Xt, torch_params(t, layout))
        return -(Yt * torch.log_softmax(z, dim=-1)).sum(-1)

    tt = torch.tensor(theta, requires_grad=True)
    per = per_sample_losses(tt)
    total = per.mean() if preset == "pytorch" else per.sum()  # the presets' reductions
    (g_torch,) = torch.autograd.grad(total, tt)
    g_torch = g_torch.numpy()
    total_value = float(total.detach())
    assert abs(net.loss_value(X, Y, p) - total_value) <= 1e-12 * abs(total_value)
    for method in ("chain", "operator"):
        assert rel(net.gradient(X, Y, p, method=method).vector, g_torch) <= 1e-12, method
    rows = net.per_sample_gradients(X, Y, p)
    torch_rows = np.stack([torch.autograd.grad(per_sample_losses(tt)[i], tt)[0].numpy() for i in range(X.shape[0])])
    assert rel(rows, torch_rows) <= 1e-12
    # and the layer's own closed-form Jacobians against float64 central differences of the loss
    f = lambda t: net.loss_value(X, Y, net.unpack(t))  # noqa: E731
    for e in net.entries:
        if e.name.startswith(("gamma", "beta")):
            for j in range(e.offset, e.offset + e.size):
                d = np.zeros_like(theta)
                d[j] = 1e-6
                assert abs((f(theta + d) - f(theta - d)) / 2e-6 - g_torch[j]) <= 1e-8 * max(1.0, abs(g_torch[j]))


@pytest.mark.parametrize("preset", ["pytorch", "damadi"])
def test_row_norm_full_jacobians_equal_jacrev(preset):
    net, p, X, Y, layout = row_norm_setup(preset)
    x = X[1]
    theta_t = torch.tensor(net.pack(p))
    xt = torch.tensor(x)
    J_theta = jacrev(lambda t: torch_logits(xt[None], torch_params(t, layout))[0])(theta_t).numpy()
    J_x = jacrev(lambda v: torch_logits(v[None], torch_params(theta_t, layout))[0])(xt).numpy()
    Jt = net.jacobian_theta(x, p)
    assert Jt.shape == J_theta.shape == (3, net.n_params)
    assert rel(Jt.to_dense(), J_theta) <= 1e-12
    assert rel(Jt.to_sparse().toarray(), J_theta) <= 1e-12
    assert rel(net.jacobian_input(x, p).to_dense(), J_x) <= 1e-12
    # forward mode (jvp_input / jvp_params of the protocol) and reverse mode of the lazy batch operator
    op = BatchJacobianOperator(net, X, p)
    v = np.random.default_rng(4).standard_normal(net.n_params)
    batch_J = np.concatenate([jacrev(lambda t: torch_logits(torch.tensor(X[i])[None], torch_params(t, layout))[0])(theta_t).numpy()
                              for i in range(X.shape[0])])
    assert rel(op.matvec(v), batch_J @ v) <= 1e-12
    u = np.random.default_rng(5).standard_normal(batch_J.shape[0])
    assert rel(op.rmatvec(u), batch_J.T @ u) <= 1e-12


@pytest.mark.parametrize("preset", ["pytorch", "damadi"])
def test_verify_passes_with_the_torch_twin_of_the_new_layer(preset):
    net, p, X, Y, _ = row_norm_setup(preset)
    report = verify(net, X, Y, p)
    assert "torch autograd" in report.methods and "torch autograd" not in report.skipped, report.skipped
    assert report.passed, report.to_text()
    assert report.worst("torch autograd") <= 1e-12 and report.worst("finite differences") <= 1e-6


@pytest.mark.parametrize("kw, shape", RowNorm.protocol_examples())
def test_row_norm_passes_the_layer_protocol_contract(kw, shape):
    """The contract every registered layer passes (tests/test_layer_protocol.py), run on the new layer."""
    protocol.test_forward_shape_and_jacobians_against_central_differences("row_norm_sketch", kw, shape)
    protocol.test_forward_and_reverse_products_equal_the_dense_jacobians("row_norm_sketch", kw, shape)
    protocol.test_torch_twin_equals_forward("row_norm_sketch", kw, shape)


def test_the_input_jacobian_annihilates_shifts_and_nearly_scalings():
    r"""(γ/σ)(I − 11ᵀ/n − x̂x̂ᵀ/n) maps 1 to 0 (a shift is forgotten: rank n − 1) and the centred input
    c = x − μ1 to (γ/σ) ε/(v + ε) c (a scaling is forgotten but for ε), in closed form."""
    layer = RowNorm()
    layer.build((6,))
    rng = np.random.default_rng(0)
    params, a = layer.init_params(rng), rng.standard_normal(6)
    J = layer.jac_input(a, layer.forward(a[None], params)[0], params).to_dense()
    c, v = a - a.mean(), a.var()
    sigma = np.sqrt(v + layer.eps)
    assert np.abs(J @ np.ones(6)).max() <= 1e-14
    assert rel(J @ c, params["gamma"] / sigma * c * layer.eps / (v + layer.eps)) <= 1e-9
    assert np.linalg.matrix_rank(J) == 5


def test_the_registration_lasts_for_this_module_only():
    from jacobian_bp.layers import all_layer_classes

    assert all_layer_classes()["row_norm_sketch"] is RowNorm
    assert "row_norm_sketch" not in {c.values[0] for c in protocol.CASES}  # collected before the fixture ran


# ============================================================================ b. a new convention
#: a convention no preset has: Damadi's stored layout and column vec, Ganev's weights-first θ, a summed
#: ½‖y − ŷ‖² (MML's per-sample loss) -- one value, no package edit
SKETCH = get_convention("pytorch").replace(
    name="sketch", weight_layout="in_out", vec_order="col", theta_order="weights_first", reduction="sum",
    mse_scale=0.5, mse_reduce_outputs="sum", source="tests/test_extending.py")

MSE_SPEC = {"input": 3, "layers": [{"type": "dense", "out_features": 4}, {"type": "sigmoid"},
                                   {"type": "dense", "out_features": 2}], "loss": "mse"}


def test_a_new_convention_is_one_value(monkeypatch):
    monkeypatch.setitem(PRESETS, "sketch", SKETCH)  # a name a spec (and get_convention) can use
    net_s = load_spec(dict(MSE_SPEC, convention="sketch")).network
    net_p = load_spec(dict(MSE_SPEC, convention="pytorch")).network
    assert net_s.convention is SKETCH and get_convention("sketch") is SKETCH
    rng = np.random.default_rng(7)
    W1, b1, W2, b2 = rng.standard_normal((4, 3)), rng.standard_normal(4), rng.standard_normal((2, 4)), rng.standard_normal(2)
    X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    # the user's parameters under each convention, written by hand from its definition
    p_p = {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
    p_s = {"W1": W1.T, "b1": b1, "W2": W2.T, "b2": b2}  # in_out: the stored weight is Wᵀ
    # θ of "sketch": weights first; vec stacks the columns of the stored Wᵀ = the rows of W
    theta_s = np.concatenate([W1.ravel(), W2.ravel(), b1, b2])
    assert np.array_equal(net_s.pack(p_s), theta_s)
    assert np.array_equal(convert_theta(net_p.pack(p_p), net_p, net_s), theta_s)

    # the oracle: torch autograd of each convention's loss, laid out by hand
    T = {k: torch.tensor(v, requires_grad=True) for k, v in (("W1", W1), ("b1", b1), ("W2", W2), ("b2", b2))}
    Yhat = F.linear(torch.sigmoid(F.linear(torch.tensor(X), T["W1"], T["b1"])), T["W2"], T["b2"])
    loss_s = 0.5 * ((Yhat - torch.tensor(Y)) ** 2).sum()  # Σ_i ½‖y_i − ŷ_i‖²
    g = torch.autograd.grad(loss_s, list(T.values()), retain_graph=True)
    g_s = np.concatenate([g[0].numpy().ravel(), g[2].numpy().ravel(), g[1].numpy(), g[3].numpy()])
    loss_p = F.mse_loss(Yhat, torch.tensor(Y))  # torch's MSELoss(): the mean over the N·n_L elements
    g = torch.autograd.grad(loss_p, list(T.values()))
    g_p = np.concatenate([t.numpy().ravel() for t in g])

    loss_s, loss_p = float(loss_s.detach()), float(loss_p.detach())
    assert abs(net_s.loss_value(X, Y, p_s) - loss_s) <= 1e-13 * loss_s
    assert abs(net_p.loss_value(X, Y, p_p) - loss_p) <= 1e-13 * loss_p
    grad_s = net_s.gradient(X, Y, p_s).vector
    assert rel(grad_s, g_s) <= 1e-12
    assert rel(net_p.gradient(X, Y, p_p).vector, g_p) <= 1e-12
    # the conversion to the pytorch preset: permutation and the loss scales (½ sum vs element mean)
    assert rel(convert_gradient(grad_s, net_s, net_p, n_samples=5), g_p) <= 1e-12
    assert rel(convert_gradient(g_p, net_p, net_s, n_samples=5), g_s) <= 1e-12
    report = verify(net_s, X, Y, p_s)
    assert report.passed and "torch autograd" in report.methods, report.to_text()


# ============================================================================ c. a new notation
SKETCH_NOTATION = Notation("sketch", vector=r"\vec{%s}", matrix=r"\mathsf{%s}", index="sub", transpose="T",
                           jacobian="partial", activation=r"\phi", loss=r"\mathcal{E}",
                           delta=r"\boldsymbol{\varepsilon}", theta=r"\vartheta", layer_letter="k",
                           source="tests/test_extending.py")

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:\s*\\(?:times|cdot)\s*10\^\{-?\d+\})?")


def _numbers(latex: str) -> list[float]:
    out = []
    for m in _NUMBER.finditer(latex):
        mant, _, exp = re.sub(r"\s*\\(?:times|cdot)\s*", "*", m.group(0)).partition("*10^{")
        out.append(float(mant) * (10.0 ** int(exp.rstrip("}")) if exp else 1.0))
    return out


def test_a_new_notation_is_one_value():
    spec = load_spec("damadi-2layer")
    net, p = spec.network, spec.params()
    X, Y = spec.data()
    doc = derivation_document(net, p, X, Y, notation=SKETCH_NOTATION)
    body = doc.split(r"\appendix")[0]  # the appendix quotes Damadi's Algorithm 1 in Damadi's own symbols
    for symbol in (r"\mathsf{W}_1", r"\mathsf{W}_2", r"\vec{z}_2", r"\vec{a}_1", r"\vartheta", r"\mathcal{E}",
                   r"\phi_1", r"\boldsymbol{\varepsilon}_2", r"\frac{\partial \vec{z}_2}{\partial"):
        assert symbol in body, symbol
    for damadi_symbol in (r"\mathbf{W}^{[1]}", r"\mathbf{z}^{[2]}", r"\mathbf{J}_{", r"\boldsymbol{\delta}^{["):
        assert damadi_symbol not in body, damadi_symbol
    assert body.count(r"\mathcal{E}") >= 10  # the loss symbol (its one other spelling: see the xfail below)
    # the numbers it shows: the gradient of W1 against torch autograd (Damadi: Σ CE, W stored in×out)
    T = {k: torch.tensor(np.asarray(v).T if k.startswith("W") else v, requires_grad=True) for k, v in p.items()}
    z = F.linear(torch.sigmoid(F.linear(torch.tensor(X)[None], T["W1"], T["b1"])), T["W2"], T["b2"])
    loss = -(torch.tensor(Y)[None] * torch.log_softmax(z, -1)).sum()
    gW1 = torch.autograd.grad(loss, T["W1"])[0].numpy().T  # in the stored in×out layout
    line = next(s for s in doc.splitlines() if s.startswith(r"\nabla_{\mathsf{W}_1} \mathcal{E} &= \left[\begin{array}"))
    shown = _numbers(line.split("&=", 1)[1].split(r"\in")[0])
    assert len(shown) == gW1.size
    np.testing.assert_allclose(shown, gW1.ravel(), rtol=1e-3, atol=1e-12)
    assert format_number(gW1[0, 0], 4) in line
    assert f"{float(loss.detach()):.4g}" in doc


def test_every_symbol_of_the_derivation_follows_the_notation():
    spec = load_spec("damadi-2layer")
    X, Y = spec.data()
    body = derivation_document(spec.network, spec.params(), X, Y, notation=SKETCH_NOTATION).split(r"\appendix")[0]
    for damadi_symbol in (r"\hat{\mathbf{y}}", r"\mathbf{a}", r"\boldsymbol{\delta}", r"\boldsymbol\theta"):
        assert damadi_symbol not in body, damadi_symbol
    assert not re.search(r"\\ell\b", body)


def test_a_registered_notation_is_named_by_a_convention(monkeypatch):
    """``register_notation`` makes a user's notation a name a convention can carry: the network then renders in it
    everywhere (derivation, Jupyter display) without passing it; a Notation value works as the knob too."""
    from jacobian_bp.engine import conventions as conventions_module
    from jacobian_bp.render import notation as notation_module
    from jacobian_bp.render.notation import get_notation, register_notation

    monkeypatch.setattr(conventions_module, "NOTATION_NAMES", list(conventions_module.NOTATION_NAMES))
    monkeypatch.setattr(conventions_module, "INSTALLED_NOTATIONS", dict(conventions_module.INSTALLED_NOTATIONS))
    monkeypatch.setattr(notation_module, "NOTATIONS", dict(notation_module.NOTATIONS))
    with pytest.raises(SpecError, match="notation"):
        get_convention("damadi").replace(notation="sketch")  # not registered yet
    register_notation(SKETCH_NOTATION)
    assert get_notation("sketch") is SKETCH_NOTATION
    with pytest.raises(SpecError, match="built-in"):
        register_notation(Notation("damadi"))
    spec = load_spec("damadi-2layer")
    X, Y = spec.data()
    for knob in ("sketch", SKETCH_NOTATION):
        conv = get_convention("damadi").replace(name="damadi-sketch", notation=knob)
        net = spec.network.__class__([layer for layer in _layers_of(spec.network)], spec.network.loss, spec.network.input_shape,
                                     convention=conv, name="sketch-net")
        body = derivation_document(net, spec.params(), X, Y).split(r"\appendix")[0]
        assert r"\mathsf{W}_1" in body and r"\vec{z}_2" in body and r"\mathbf{W}^{[1]}" not in body
        J = net.jacobian_theta(X, spec.params())
        shown = J._repr_latex_()
        assert r"\vec{z}_2" in shown and r"\mathbf{z}^{[2]}" not in shown, shown
        from jacobian_bp.symbolic.blocks import BlockChain

        assert r"\mathsf{W}_2" in BlockChain(net).latex()  # the block chain follows the convention's notation too


def _layers_of(network):
    """The layers of a built network in order (parameter-free first layers, then each stage and its activations)."""
    out = list(network.pre)
    for st in network.stages:
        out += [st.layer] + list(st.post)
    return out


# ============================================================================ d. a new textbook document
def nielsen_document():
    r"""A fifth source document: Nielsen, *Neural Networks and Deep Learning*, ch. 2, eq. (BP1).

    What a real new document takes: one module ``jacobian_bp/documents/nielsen.py`` giving
    ``DOCUMENT = Document("nielsen", ...)`` and ``entries() -> list[Entry]`` (the shape of this function
    and of :func:`nielsen_entries`), and one registration line -- its name added to
    ``SOURCES = (damadi, ganev, park, mml, nielsen)`` in :mod:`jacobian_bp.documents.catalogue`, which
    calls :func:`~jacobian_bp.documents.model.register_document` for each source.  Here the same two
    steps are done on the live objects (``register_document`` and ``SOURCES``) by a fixture.

    Nielsen writes :math:`w^l_{jk}` from neuron :math:`k` of layer :math:`l-1` to neuron :math:`j` of layer
    :math:`l` (``out × in``), :math:`z^l = w^l a^{l-1} + b^l` and the quadratic cost
    :math:`C_x = \tfrac12\|y - a^L\|^2`: the ``ganev`` preset with ``mse_scale = 0.5``.
    """
    return Document("nielsen", "M. Nielsen: Neural Networks and Deep Learning, ch. 2", "Nielsen ch. 2",
                    "nielsen_ch2.txt", "ganev")


_NIELSEN = Setting("ganev", hidden="sigmoid", output="sigmoid", loss="mse", mse_scale=0.5)


def _bp1(q, l):
    r"""(BP1): :math:`\delta^L = \nabla_a C \odot \sigma'(z^L)`."""
    return q.hadamard(q.grad_C(q.yhat), q.dsigma(q.L, q.z[q.L]))


def nielsen_entries():
    return [Entry("nielsen.BP1", "nielsen", "ch. 2, eq. (BP1)", "formula", "δ^L = ∇_a C ⊙ σ'(z^L)",
                  Claim("Nielsen (BP1)", _bp1, "delta", _NIELSEN, layers="last"),
                  "Per training example x; ∇_a C = a^L − y for the quadratic cost.")]


@pytest.fixture
def nielsen_registered(monkeypatch):
    """Register the document and add its module to SOURCES for one test; everything is restored after."""
    document = nielsen_document()
    source = types.SimpleNamespace(DOCUMENT=document, entries=nielsen_entries)  # what documents/nielsen.py would be
    register_document(source.DOCUMENT)
    monkeypatch.setattr(catalogue_module, "SOURCES", catalogue_module.SOURCES + (source,))
    catalogue_module._all_entries.cache_clear()
    yield document
    del DOCUMENTS["nielsen"]
    catalogue_module._RESULTS.pop("nielsen.BP1", None)
    catalogue_module._all_entries.cache_clear()


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def test_a_new_document_is_one_module_and_one_registration(nielsen_registered):
    n_before = len(catalogue()) - 1
    (e,) = catalogue("nielsen")
    assert e.document == "nielsen" and len(catalogue()) == n_before + 1 and catalogue()[-1] is e
    ((entry, res),) = run_catalogue([e])
    assert res.verdict == "holds" and res.n_instances >= 2 and res.max_error <= 1e-12, res.summary()
    assert "Nielsen ch. 2" in build_errata(catalogue("nielsen")).to_markdown()  # the errata report lists it
    # the oracle: (BP1) is ∂C/∂z^L of C = ½‖y − σ(z)‖², by float64 central differences (NumPy, not the engine)
    rng = np.random.default_rng(1)
    z, y = rng.standard_normal(4), rng.standard_normal(4)
    cost = lambda v: 0.5 * np.sum((y - _sigmoid(v)) ** 2)  # noqa: E731
    fd = np.array([(cost(z + 1e-6 * d) - cost(z - 1e-6 * d)) / 2e-6 for d in np.eye(4)])
    bp1 = (_sigmoid(z) - y) * _sigmoid(z) * (1 - _sigmoid(z))
    assert rel(bp1, fd) <= 1e-9
    # and the checker is not vacuous: the same statement without σ'(z^L) fails on the same setting
    wrong = check(Claim("BP1 without σ'", lambda q, l: q.grad_C(q.yhat), "delta", _NIELSEN, layers="last"))
    assert wrong.verdict == "fails"


def test_the_document_registration_is_undone():
    assert "nielsen" not in DOCUMENTS
    assert all(e.document != "nielsen" for e in catalogue())
