r"""Exact identities of the documents, each a SymPy difference that simplifies to zero.

Two families (see issue 3 and the docstrings below for the sources):

1. **Last-layer deltas** (Damadi Table 1, Park Thm. 6.1).  With :math:`\hat{\mathbf y} = \mathbf f(\mathbf z)`,

   * sigmoid + BCE: :math:`\nabla_{\mathbf z}\ell = \hat{\mathbf y}-\mathbf y`;
   * softmax + CE: :math:`\nabla_{\mathbf z}\ell = \hat{\mathbf y}-\mathbf y` when :math:`\sum_i y_i = 1`
     (substituted as :math:`y_n = 1-\sum_{i<n}y_i`);
   * identity + MSE :math:`c\|\mathbf y-\hat{\mathbf y}\|^2`: :math:`2c(\hat{\mathbf y}-\mathbf y)`, i.e.
     :math:`-2(\mathbf y-\hat{\mathbf y})` for Damadi's unhalved MSE and :math:`\hat{\mathbf y}-\mathbf y`
     for Park's :math:`\tfrac12\|\cdot\|^2`.

   The left side is SymPy's own derivative of the composed loss :math:`\ell(\mathbf y, \mathbf f(\mathbf z))`
   (:func:`delta_identity`), or the engine's chain :math:`(\mathbf J_{\mathbf z}\hat{\mathbf y})^\top\nabla_{\hat{\mathbf y}}\ell`
   (Ganev eq. (3.1), :func:`delta_chain_identity`); the right side is the closed form used by
   :func:`~jacobian_bp.symbolic.loss_expressions.closed_form_delta`.

2. **The chain equals the closed-form deltas.**  For any vector
   :math:`\boldsymbol\delta^{[L]} = \nabla_{\mathbf z^{[L]}}\ell` (free symbols),
   Damadi's explicit chain :math:`(\mathbf J_\theta\mathbf z^{[L]})^\top\boldsymbol\delta^{[L]}`
   (the engine's structured Jacobian, expanded in x and θ) equals

   * Ganev Prop. 3.1: :math:`\nabla_{\mathbf z_{\ell-1}}\mathcal L = \mathrm{Jac}_{\ell-1}^\top W_\ell^\top\nabla_{\mathbf z_\ell}\mathcal L`,
     :math:`\nabla_{W_\ell}\mathcal L = \nabla_{\mathbf z_\ell}\mathcal L\,\mathbf a_{\ell-1}^\top`,
     :math:`\nabla_{b_\ell}\mathcal L = \nabla_{\mathbf z_\ell}\mathcal L` (:func:`ganev_prop31`);
   * Park Thm. 5.1: :math:`\boldsymbol\delta_\triangleleft = g'_\triangleleft(\mathbf z_\triangleleft)\odot(W^\top\boldsymbol\delta)`,
     :math:`\nabla_W\mathcal L = \boldsymbol\delta\mathbf a_\triangleleft^\top`, :math:`\nabla_b\mathcal L = \boldsymbol\delta`
     (:func:`park_thm51`, elementwise activations).

   Both references are written here with plain SymPy matrices: the forward pass from
   each activation's defining formula (``sympy_f``) and the activation Jacobians from
   SymPy's ``Matrix.jacobian`` -- never from the engine's ``jac_input``/``sympy_df``.  Their
   gradients are packed into θ with the convention's layout (:meth:`Network.pack_canonical`).

:meth:`ExactIdentity.holds` decides ``lhs - rhs == 0`` exactly: structural equality, then
``expand``, then ``cancel``/``simplify`` of what remains.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy
from sympy.core.function import AppliedUndef

from ..errors import ShapeError, SpecError, UnsupportedInputError
from ..backend.exact import exact_number
from ..layers import Sigmoid, Softmax
from ..layers.activations import IdentityActivation
from ..layers.losses import BCE, MSE, CrossEntropy
from ..engine.network import Network
from .gradients import chain_gradient
from .intermediates import _derivatives_as_subs, named_forward, substitute_definitions
from .loss_expressions import closed_form_delta, loss_expression
from .networks import SymbolicNetwork, as_sympy_entry, require_symbolic_network, symbol_array
from .printing import latex as paper_latex

__all__ = ["ExactIdentity", "simplifies_to_zero", "delta_identity", "delta_chain_identity", "ganev_prop31",
           "park_thm51", "chain_identity", "PAIRS"]

#: the matched pairs of Damadi Table 1 / Park Thm. 6.1
PAIRS = ("sigmoid+bce", "softmax+ce", "identity+mse")


def _nonzero_somewhere(expr: sympy.Expr, trials: int = 2) -> bool:
    """True if ``expr`` evaluates (30 digits) clearly away from 0 at a random point: then it is
    certainly not identically zero.  False when it cannot be evaluated (undefined functions)."""
    free = sorted(expr.free_symbols, key=sympy.default_sort_key)
    if expr.has(AppliedUndef, sympy.Subs, sympy.Derivative, sympy.Heaviside, sympy.Piecewise):
        return False
    rng = np.random.default_rng(12345)
    for _ in range(trials):
        point = {s: sympy.Rational(int(rng.integers(-900, 900)), 1000) or sympy.Rational(1, 7) for s in free}
        try:
            v = complex(expr.xreplace(point).evalf(30))
        except (TypeError, ValueError, ZeroDivisionError):
            return False
        if np.isfinite(v) and abs(v) > 1e-12:
            return True
    return False


def _zero_as_rational_function(expr: sympy.Expr) -> bool:
    """Sufficient test: replace every maximal transcendental sub-expression (``exp(…)``, ``tanh(…)``,
    ``f'(…)``, non-integer powers) by an independent symbol; if the result is the zero rational
    function, ``expr`` is identically zero (an identity stays true when the symbols are specialized)."""
    atoms = set(expr.atoms(sympy.Function, sympy.Subs, sympy.Derivative))
    atoms |= {p for p in expr.atoms(sympy.Pow) if not p.exp.is_Integer}
    generic = expr.xreplace({a: sympy.Dummy() for a in atoms})
    try:
        return sympy.cancel(sympy.together(generic)) == 0
    except sympy.PolynomialError:  # pragma: no cover - e.g. piecewise leftovers
        return False


def simplifies_to_zero(expr) -> bool:
    """Whether a scalar SymPy expression is identically zero: structural; as a rational function of
    its transcendental sub-expressions; then ``expand``, ``cancel``, ``simplify`` (a random-point
    evaluation first rules out clear non-zeros)."""
    expr = as_sympy_entry(expr, "simplifies_to_zero")
    if expr == 0 or expr.is_zero:
        return True
    if _zero_as_rational_function(expr):
        return True
    e = sympy.expand(expr)
    if e == 0 or e.is_zero:
        return True
    if _nonzero_somewhere(e):
        return False
    e = sympy.cancel(sympy.together(e))
    if e == 0:
        return True
    return sympy.simplify(e) == 0


@dataclass
class ExactIdentity:
    r"""A claimed identity ``lhs == rhs`` (matrices or vectors of equal shape) and where it comes from."""

    name: str
    source: str
    lhs: sympy.Matrix
    rhs: sympy.Matrix
    assumptions: dict | None = None
    note: str = ""

    def __post_init__(self):
        self.lhs = sympy.Matrix(self.lhs)
        self.rhs = sympy.Matrix(self.rhs)
        if self.lhs.shape != self.rhs.shape:
            raise ShapeError(f"identity {self.name!r}: left side is {self.lhs.shape}, right side {self.rhs.shape}")

    def difference(self) -> sympy.Matrix:
        """``lhs - rhs`` with the assumptions (e.g. :math:`y_n = 1-\\sum_{i<n} y_i`) substituted."""
        d = self.lhs - self.rhs
        return d.xreplace(self.assumptions) if self.assumptions else d

    def residual(self) -> list:
        """The entries of :meth:`difference` that do *not* simplify to zero (empty when it holds)."""
        return [e for e in self.difference() if not simplifies_to_zero(e)]

    def holds(self) -> bool:
        """True when every entry of :meth:`difference` simplifies to exactly zero (stops at the first that does not)."""
        return all(simplifies_to_zero(e) for e in self.difference())

    def latex(self) -> str:
        return (rf"\text{{{self.name}}}:\quad {paper_latex(self.lhs)} = {paper_latex(self.rhs)}")

    def _repr_latex_(self) -> str:
        return "$" + self.latex() + "$"

    def __repr__(self) -> str:
        return f"ExactIdentity({self.name!r}, {self.lhs.shape[0]}x{self.lhs.shape[1]}, source={self.source!r})"


# ---------------------------------------------------------------------- last-layer deltas
def _pair(pair: str, n: int, mse_scale) -> tuple:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"delta identity: n must be a positive integer, received {n!r}")
    if pair == "sigmoid+bce":
        return Sigmoid(), BCE()
    if pair == "softmax+ce":
        return Softmax(), CrossEntropy()
    if pair == "identity+mse":
        return IdentityActivation(), MSE(scale=mse_scale)  # validated there: a finite positive real, never a string
    raise SpecError(f"unknown matched pair {pair!r}; expected one of {PAIRS}")


def _sum_to_one(y: list) -> dict:
    return {y[-1]: 1 - sum(y[:-1])}


def _layer_output(layer, z: np.ndarray) -> np.ndarray:
    layer.build((z.size,))
    return layer.forward(z[None], {})[0]


def delta_identity(pair: str, n: int = 3, mse_scale=1) -> ExactIdentity:
    r""":math:`\nabla_{\mathbf z}\ell(\mathbf y, \mathbf f(\mathbf z))` by SymPy's differentiation = Damadi Table 1's closed form.

    Parameters
    ----------
    pair : {"sigmoid+bce", "softmax+ce", "identity+mse"}
    n : int
        Number of outputs.
    mse_scale : number
        ``c`` of :math:`c\|\mathbf y-\hat{\mathbf y}\|^2` (1: Damadi's unhalved MSE, ``1/2``: Park).
    """
    act, loss = _pair(pair, n, mse_scale)
    z = symbol_array("z", (n,))
    y = symbol_array("y", (n,))
    yhat = _layer_output(act, z)
    ell = loss_expression(loss, y, yhat)
    lhs = [sympy.diff(ell, zi) for zi in z]
    rhs = list(closed_form_delta(loss, y, yhat))
    if pair == "identity+mse":
        c = exact_number(mse_scale, "delta identity: mse_scale")
        rhs_paper = [-2 * c * (t - p) for t, p in zip(y, yhat)]  # Damadi: -2(y - ŷ) for c = 1
        if any(sympy.expand(a - b) != 0 for a, b in zip(rhs, rhs_paper)):  # pragma: no cover - sanity
            raise AssertionError("closed_form_delta disagrees with -2c(y - ŷ)")
    assumptions = _sum_to_one(list(y)) if pair == "softmax+ce" else None
    source = {"sigmoid+bce": "Damadi Table 1 row 1; Park §6.2, Thm. 6.1(2)",
              "softmax+ce": "Damadi Table 1 row 2; Park §6.3, Thm. 6.1(3)",
              "identity+mse": "Damadi Table 1 row 3 (c = 1: -2(y - ŷ)); Park eq. (27) (c = 1/2: ŷ - y)"}[pair]
    return ExactIdentity(f"grad_z l = closed form ({pair}, n={n})", source, sympy.Matrix(lhs), sympy.Matrix(rhs),
                         assumptions, "softmax+CE needs sum(y) = 1" if assumptions else "")


def delta_chain_identity(pair: str, n: int = 3, mse_scale=1) -> ExactIdentity:
    r"""Ganev eq. (3.1) with the engine's activation Jacobian, :math:`(\mathbf J_{\mathbf z}\hat{\mathbf y})^\top\nabla_{\hat{\mathbf y}}\ell`,
    equals the closed form of Damadi Table 1 (softmax + CE: for :math:`\sum_i y_i = 1`)."""
    act, loss = _pair(pair, n, mse_scale)
    z = symbol_array("z", (n,))
    y = symbol_array("y", (n,))
    yhat = _layer_output(act, z)
    s = symbol_array(r"\hat{y}", (n,))
    grad_yhat = [sympy.diff(loss_expression(loss, y, s), si) for si in s]
    grad_yhat = [g.xreplace(dict(zip(s, yhat))) for g in grad_yhat]
    J = act.jac_input(z, yhat, {})
    lhs = J.rmatvec(np.array(grad_yhat, dtype=object))
    rhs = closed_form_delta(loss, y, yhat)
    assumptions = _sum_to_one(list(y)) if pair == "softmax+ce" else None
    return ExactIdentity(f"(J_z yhat)^T grad_yhat l = closed form ({pair}, n={n})",
                         "Ganev Prop. 3.1 eq. (3.1); Damadi Table 1", sympy.Matrix(list(lhs)), sympy.Matrix(list(rhs)),
                         assumptions)


# ---------------------------------------------------------------------- closed-form backprop references
def _textbook_stack(network: Network) -> list:
    acts = []
    for st in network.stages:
        if st.layer.affine_weight_name is None:
            raise TypeError(f"the textbook closed forms (Ganev Prop. 3.1, Park Thm. 5.1) cover dense layers; "
                            f"network {network.name!r} has a {st.layer.kind} layer")
        if len(st.post) > 1:
            raise TypeError(f"the textbook closed forms take one activation per layer; layer {st.index} has {len(st.post)}")
        acts.append(st.post[0] if st.post else None)
    return acts


def _activation(act, z: sympy.Matrix) -> tuple[sympy.Matrix, sympy.Matrix]:
    r"""``(σ(z), Jac)``: the activation from its defining formula, the Jacobian by ``Matrix.jacobian``.

    ReLU's ``t H(t)`` differentiates to ``H(t) + t δ(t)``; the term ``t δ(t)`` vanishes
    identically and is dropped.  Piecewise activations with a kink at 0 (leaky ReLU, ELU)
    are refused: SymPy's derivative and the stated subgradient differ at the kink.
    """
    n = z.shape[0]
    if act is None:
        return z, sympy.eye(n)
    if act.is_kinked:
        raise TypeError(f"{act.kind}: not differentiable at 0 as a SymPy Piecewise; its identities hold away from the "
                        "kink -- check it numerically (finite differences) instead")
    d = [sympy.Dummy(f"d{i}", real=True) for i in range(n)]
    try:
        f = sympy.Matrix(act.sympy_vector(d))  # the layer's own SymPy formula
    except (UnsupportedInputError, NotImplementedError):
        raise TypeError(f"no reference formula for activation {act.kind!r}") from None
    J = f.jacobian(sympy.Matrix(d))
    J = J.applyfunc(lambda e: e.replace(lambda a: isinstance(a, sympy.DiracDelta), lambda a: sympy.Integer(0))
                    if e.has(sympy.DiracDelta) else e)
    subs = dict(zip(d, list(z)))
    dset = set(d)

    def at_point(e):
        e = _derivatives_as_subs(e, dset).xreplace(subs)
        # f'(s)|_{s = z} at a plain symbol z is just Derivative(f(z), z)
        return e.replace(lambda t: isinstance(t, sympy.Subs) and all(p.is_Symbol for p in t.point),
                         lambda t: t.doit()) if e.has(sympy.Subs) else e

    return f.applyfunc(lambda e: e.xreplace(subs)), J.applyfunc(at_point)


def _forward_reference(snet: SymbolicNetwork, named_z: dict | None = None):
    """Forward pass with plain SymPy matrices: ``z = W a + b`` (or the given named ``z`` symbols)."""
    net = require_symbolic_network(snet, "textbook closed form").network
    acts = _textbook_stack(net)
    canon = snet.canonical_params()
    Ws = [sympy.Matrix(canon[f"W{l}"].tolist()) for l in range(1, net.L + 1)]
    bs = [sympy.Matrix(list(canon[f"b{l}"])) if f"b{l}" in canon else sympy.zeros(W.shape[0], 1)
          for l, W in enumerate(Ws, 1)]
    a = [sympy.Matrix(list(snet.x.ravel()))]
    jacs = []
    for l, (W, b, act) in enumerate(zip(Ws, bs, acts), 1):
        z = W * a[-1] + b if named_z is None else sympy.Matrix(list(np.ravel(named_z[l])))
        out, J = _activation(act, z)
        a.append(out)
        jacs.append(J)
    return Ws, a, jacs, acts


def _pack(network: Network, dWs: list, dbs: list) -> np.ndarray:
    canon = {}
    for l, (dW, db) in enumerate(zip(dWs, dbs), 1):
        canon[f"W{l}"] = np.array(dW.tolist(), dtype=object)
        if f"b{l}" in network.param_names:
            canon[f"b{l}"] = np.array(list(db), dtype=object)
    return network.pack_canonical(canon)


def _delta_vector(snet: SymbolicNetwork, delta_L) -> sympy.Matrix:
    n = snet.network.n_out
    d = np.asarray(delta_L, dtype=object).ravel()
    if d.shape != (n,):
        raise ShapeError(f"delta_L must have {n} entries (size of z[{snet.network.L}]), received {d.shape[0]}")
    return sympy.Matrix(list(d))


def ganev_prop31(snet: SymbolicNetwork, delta_L, named_z: dict | None = None) -> np.ndarray:
    r"""Ganev Prop. 3.1 (eqs. 3.2--3.4) from :math:`\nabla_{\mathbf z_L}\mathcal L` = ``delta_L``; gradient in θ order.

    :math:`\nabla_{\mathbf z_{\ell-1}} = \mathrm{Jac}_{\ell-1}^\top W_\ell^\top\nabla_{\mathbf z_\ell}`,
    :math:`\nabla_{W_\ell} = \nabla_{\mathbf z_\ell}\mathbf a_{\ell-1}^\top`, :math:`\nabla_{b_\ell} = \nabla_{\mathbf z_\ell}`,
    with :math:`W_\ell\in\mathbb R^{n_\ell\times n_{\ell-1}}` (the engine's canonical layout).
    ``named_z`` (``{l: symbols}``) evaluates everything at named pre-activations instead of
    :math:`\mathbf z_\ell = W_\ell\mathbf a_{\ell-1}+\mathbf b_\ell`.
    """
    Ws, a, jacs, _ = _forward_reference(snet, named_z)
    g = _delta_vector(snet, delta_L)
    L = len(Ws)
    dWs, dbs = [None] * L, [None] * L
    for l in range(L, 0, -1):
        dWs[l - 1] = g * a[l - 1].T
        dbs[l - 1] = g
        if l > 1:
            g = jacs[l - 2].T * (Ws[l - 1].T * g)
    return _pack(snet.network, dWs, dbs)


def park_thm51(snet: SymbolicNetwork, delta_L, named_z: dict | None = None) -> np.ndarray:
    r"""Park Thm. 5.1 / eqs. (17)--(19): :math:`\boldsymbol\delta[\ell-1] = g'(\mathbf z[\ell-1])\odot(W[\ell]^\top\boldsymbol\delta[\ell])`,
    :math:`\nabla_{W[\ell]} = \boldsymbol\delta[\ell]\mathbf a[\ell-1]^\top`, :math:`\nabla_{b[\ell]} = \boldsymbol\delta[\ell]`
    (hidden activations elementwise, :math:`g'` the diagonal of SymPy's Jacobian); θ order."""
    Ws, a, jacs, acts = _forward_reference(snet, named_z)
    for act in acts[:-1]:
        if act is not None and not getattr(act, "elementwise", False):
            raise TypeError(f"Park Thm. 5.1 is stated for elementwise activations; received {act.kind!r}")
    g = _delta_vector(snet, delta_L)
    L = len(Ws)
    dWs, dbs = [None] * L, [None] * L
    for l in range(L, 0, -1):
        dWs[l - 1] = g * a[l - 1].T
        dbs[l - 1] = g
        if l > 1:
            gprime = [jacs[l - 2][i, i] for i in range(jacs[l - 2].shape[0])]
            wtd = Ws[l - 1].T * g
            g = sympy.Matrix([gp * v for gp, v in zip(gprime, wtd)])
    return _pack(snet.network, dWs, dbs)


def _named_chain(snet: SymbolicNetwork, delta_L) -> tuple[np.ndarray, dict]:
    r"""Damadi's chain with the engine's layer Jacobians at named symbols, products formed explicitly;
    hidden :math:`\mathbf a^{[l]}` replaced by their definitions so that only x, θ, the named
    :math:`\mathbf z^{[l]}` and ``delta_L`` remain."""
    nf = named_forward(snet)
    net = snet.network
    g = _delta_vector(snet, delta_L)
    P = None
    blocks: dict = {}
    for l in range(net.L, 0, -1):
        st = net.stages[l - 1]
        for e in net.entries:
            if e.stage == l:
                local = st.layer.jac_params(nf.a[l - 1], nf.z[l], nf.stage_params(l), e.order)[e.local].to_sympy()
                blocks[e.name] = local if P is None else P * local
        if l > 1:
            step = nf.input_jacobian(l).to_sympy() * nf.activation_jacobian(l - 1).to_sympy()
            P = step if P is None else P * step
    J = sympy.Matrix.hstack(*[blocks[e.name] for e in net.entries])
    lhs = list(J.T * g)
    zs = {s for arr in nf.z.values() for s in np.ravel(arr)}
    return np.array(substitute_definitions(lhs, nf.definitions, keep=zs), dtype=object), nf.z


def chain_identity(snet: SymbolicNetwork, reference: str = "ganev", delta_L=None, form: str = "expanded") -> ExactIdentity:
    r"""Damadi's explicit chain :math:`(\mathbf J_\theta\mathbf z^{[L]})^\top\boldsymbol\delta^{[L]}` = a textbook closed form.

    Parameters
    ----------
    reference : {"ganev", "park"}
        Ganev Prop. 3.1 or Park Thm. 5.1.
    delta_L : array-like, optional
        :math:`\nabla_{\mathbf z^{[L]}}\ell`; default free symbols :math:`\delta^{[L]}_i` (the identity is
        then proved for every loss at once).
    form : {"expanded", "named"}
        ``expanded``: both sides in x, θ (the engine's :math:`\mathbf J_\theta\mathbf z^{[L]}` of the
        expanded network); ``named``: both sides at named pre-activations :math:`z^{[l]}_i`
        (treated as independent symbols -- an identity there implies the expanded one, and
        is much cheaper to decide for vector activations).
    """
    require_symbolic_network(snet, "chain_identity")
    if reference not in ("ganev", "park"):
        raise ValueError(f"chain_identity: reference must be 'ganev' or 'park', received {reference!r}")
    if form not in ("expanded", "named"):
        raise ValueError(f"chain_identity: form must be 'expanded' or 'named', received {form!r}")
    net = snet.network
    if delta_L is None:
        delta_L = symbol_array(r"\delta", (net.n_out,), net.L)
    if form == "expanded":
        lhs, named_z = chain_gradient(snet, delta_L), None
    else:
        lhs, named_z = _named_chain(snet, delta_L)
    rhs = (ganev_prop31 if reference == "ganev" else park_thm51)(snet, delta_L, named_z)
    src = "Ganev Prop. 3.1 (eqs. 3.2-3.4)" if reference == "ganev" else "Park Thm. 5.1 (eqs. 16-19)"
    return ExactIdentity(f"explicit chain = {reference} closed form ({net.describe()})",
                         f"Damadi eq. (1) / Alg. 1 line 8 vs {src}", sympy.Matrix(list(lhs)), sympy.Matrix(list(rhs)))
