"""Recurrent layers in LaTeX and in the symbolic backend.

* The derivation document (CLI ``latex``) of networks with an LSTM / RNN compiles with pdflatex; the layers' own
  paragraph (the unrolled chain, the sum over time steps for ``W_hh``) compiles and names the parameters with subscripts;
  a recurrent layer after another one shows its input Jacobian as the unrolled product.
* SymPy: the layers' forward on symbols equals the recursion written here with SymPy, and their exact Jacobians
  equal SymPy's differentiation of it (difference simplifies to zero); the symbolic network's exact
  :math:`\\mathbf J_\\theta\\mathbf z^{[L]}` evaluated at numbers equals torch's ``jacrev`` of ``torch.nn.LSTM``.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import sympy

from jacobian_bp.layers.recurrent import LSTM, RNN
from jacobian_bp.spec import load_spec

needs_pdflatex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")


def _spec(kind, output="last", preset="pytorch", T=3, d=2, H=2):
    layers = [{"type": kind, "hidden_size": H, "output": output}]
    if output == "all":
        layers.append({"type": "flatten"})
    layers += [{"type": "dense", "out_features": 2}, {"type": "softmax"}]
    return {"name": f"{kind} net", "input": [T, d], "layers": layers, "loss": "cross_entropy", "convention": preset,
            "data": {"seed": 1, "batch": 1}, "params": {"seed": 2}}


@needs_pdflatex
@pytest.mark.parametrize("kind, output, preset", [("lstm", "last", "pytorch"), ("rnn", "all", "damadi")])
def test_derivation_document_of_a_recurrent_network_compiles(kind, output, preset, tmp_path):
    from jacobian_bp.render.derivation import compile_pdf, derivation_document

    s = load_spec(_spec(kind, output, preset))
    X, Y = s.data()
    tex = derivation_document(s.network, s.params(), X, Y, use_torch=False)
    assert ("LSTM over $T = 3$ steps" if kind == "lstm" else "RNN over $T = 3$ steps") in tex
    assert r"\mathbf{W}_{hh}" in tex or r"\mathbf{W}_{{hh}}" in tex  # subscripted, never \mathbf{W_hh}
    assert "W_hh}" not in tex.replace(r"\mathbf{W}_{hh}", "")
    f = tmp_path / "doc.tex"
    f.write_text(tex)
    assert compile_pdf(f).stat().st_size > 1000


@needs_pdflatex
@pytest.mark.parametrize("cls, output", [(RNN, "last"), (LSTM, "all")])
def test_the_layer_paragraph_states_bptt_and_compiles(cls, output, tmp_path):
    from jacobian_bp.render.derivation import compile_pdf
    from jacobian_bp.render.latex import NetworkLatex

    s = load_spec(_spec(cls.kind, output))
    nl = NetworkLatex(s.network)
    layer = s.network.stages[0].layer
    para = layer.latex_paragraph(nl.nt, 1, nl.a_tex(0))
    assert r"\prod_{t=T}^{s+1}" in para and r"\sum_{s=1}^{T}" in para
    assert r"\mathbf{h}_{s-1}^\top" in para and "vec" in para
    assert (r"\operatorname{diag}(\mathbf{f}_t)" in para) == (cls is LSTM)  # the forget gate carries the cell state
    assert ("row block" in para) == (output == "all")
    doc = (r"\documentclass{article}\usepackage{amsmath,amssymb}\begin{document}" + para
           + r"\[" + layer.latex_input_jacobian({"W_ih": r"\mathbf{W_ih}^{[1]}", "W_hh": r"\mathbf{W_hh}^{[1]}"}) + r"\]"
           + r"\[" + s.network.stages[0].layer.latex_forward(nl.nt, 1, nl.a_tex(0), "out_in") + r"\]"
           + r"\end{document}")
    f = tmp_path / "para.tex"
    f.write_text(doc)
    assert compile_pdf(f).stat().st_size > 1000


def test_stacked_recurrent_layers_show_the_unrolled_input_jacobian():
    from jacobian_bp.render.latex import NetworkLatex, render

    s = load_spec({"input": [3, 2], "layers": [{"type": "rnn", "hidden_size": 2, "output": "all"},
                                               {"type": "lstm", "hidden_size": 2}, {"type": "dense", "out_features": 2},
                                               {"type": "softmax"}], "loss": "cross_entropy", "convention": "pytorch",
                   "data": {"seed": 1, "batch": 1}, "params": {"seed": 2}})
    nl = NetworkLatex(s.network)
    body = render(nl.input_jacobian(2).body, nl.nt)
    assert r"\prod_{u=T}^{s+1}" in body and r"\mathbf{W}_{ih}" in body


# ---------------------------------------------------------------------- SymPy
def _symbols(name, shape):
    return np.array([sympy.Symbol(f"{name}{i}", real=True) for i in range(int(np.prod(shape)))], dtype=object).reshape(shape)


def test_rnn_on_sympy_symbols_is_the_recursion_and_its_jacobians_are_exact():
    layer = RNN(hidden_size=2)
    layer.build((2, 2))
    p = {"W_ih": _symbols("u", (2, 2)), "W_hh": _symbols("w", (2, 2)), "b": _symbols("b", (2,))}
    x = _symbols("x", (2, 2))
    h1 = [sympy.tanh(sum(p["W_ih"][i, j] * x[0, j] for j in range(2)) + p["b"][i]) for i in range(2)]
    h2 = [sympy.tanh(sum(p["W_ih"][i, j] * x[1, j] for j in range(2)) + p["b"][i]
                     + sum(p["W_hh"][i, j] * h1[j] for j in range(2))) for i in range(2)]
    out = layer.forward(x[None], p)[0]
    assert all(sympy.expand(a - b) == 0 for a, b in zip(out, h2))
    Jx = layer.jac_input(x, None, p).to_sympy()
    want_x = sympy.Matrix(2, 4, lambda i, j: sympy.diff(h2[i], list(x.ravel())[j]))
    Jw = layer.jac_params(x, None, p)["W_hh"].to_sympy()
    want_w = sympy.Matrix(2, 4, lambda i, j: sympy.diff(h2[i], list(p["W_hh"].ravel())[j]))
    # exact expressions, compared at random rational points to 50 digits (simplify is too slow on nested tanh)
    syms = list(x.ravel()) + [v for k in ("W_ih", "W_hh", "b") for v in p[k].ravel()]
    rng = np.random.default_rng(0)
    for _ in range(2):
        at = {v: sympy.Rational(int(rng.integers(-9, 10)), 7) for v in syms}
        for got, want in ((Jx, want_x), (Jw, want_w)):
            diff = (got - want).subs(at).evalf(50)
            assert max(abs(v) for v in diff) < sympy.Float("1e-40")
            assert max(abs(v) for v in want.subs(at).evalf(50)) > sympy.Float("1e-3")


def test_lstm_on_sympy_symbols_matches_its_float_jacobians():
    layer = LSTM(hidden_size=1)
    layer.build((2, 1))
    rng = np.random.default_rng(0)
    p = {k: rng.standard_normal(s) for k, s in layer.param_shapes().items()}
    xs = _symbols("x", (2, 1))
    xv = rng.standard_normal((2, 1))
    sub = dict(zip(xs.ravel(), xv.ravel()))
    h = layer.forward(xs[None], p)[0][0]
    # SymPy's own derivative of the symbolic output, at the numbers, equals the float Jacobian
    d = [float(sympy.diff(h, v).subs(sub)) for v in xs.ravel()]
    assert np.allclose(d, layer.jac_input(xv, None, p).to_dense()[0], rtol=1e-12, atol=1e-14)
    J = layer.jac_params(xs, None, p)["W_hh"].to_sympy()
    assert np.allclose(np.array(J.subs(sub).evalf(), dtype=float), layer.jac_params(xv, None, p)["W_hh"].to_dense(),
                       rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_symbolic_network_jacobian_equals_torch_at_numbers(kind):
    torch = pytest.importorskip("torch")
    from jacobian_bp.symbolic.networks import SymbolicNetwork

    spec = _spec(kind, T=2, d=1, H=1)
    sn = SymbolicNetwork.from_spec({k: v for k, v in spec.items() if k not in ("data", "params")})
    J = sn.jacobian_theta().to_sympy()
    s = load_spec(spec)
    net = s.network
    X, _ = s.data()
    x = np.asarray(X)[0] if np.ndim(X) == 3 else np.asarray(X)
    params = s.params()
    values = {}
    for e in net.entries:
        syms = sn.arrays()[e.name] if e.name in sn.arrays() else None
        values.update(dict(zip(np.ravel(syms), np.ravel(params[e.name]))))
    values.update(dict(zip(np.ravel(sn.arrays()["x"]), np.ravel(x))))
    Jn = np.array(J.xreplace({k: sympy.Float(float(v), 30) for k, v in values.items()}).evalf(), dtype=float)
    theta = net.pack(params)
    layer = net.stages[0].layer
    cls = torch.nn.RNN if kind == "rnn" else torch.nn.LSTM
    m = cls(1, 1, batch_first=True, dtype=torch.float64)
    names = list(layer.param_shapes())

    def f(th):
        off, p = 0, {}
        for k, shp in list(layer.param_shapes().items()) + [("W2", (2, 1)), ("b2", (2,))]:
            n = int(np.prod(shp))
            p[k] = th[off:off + n].reshape(shp)
            off += n
        tp = {"weight_ih_l0": p["W_ih"], "weight_hh_l0": p["W_hh"]}
        if kind == "rnn":
            tp["bias_ih_l0"], tp["bias_hh_l0"] = p["b"], torch.zeros_like(p["b"])
        else:
            tp["bias_ih_l0"], tp["bias_hh_l0"] = p["b_ih"], p["b_hh"]
        out, _ = torch.func.functional_call(m, tp, (torch.tensor(x)[None],))
        return out[0, -1] @ p["W2"].T + p["b2"]

    assert names[:2] == ["W_ih", "W_hh"]
    Jt = torch.func.jacrev(f)(torch.tensor(theta)).numpy()
    assert np.linalg.norm(Jn - Jt) <= 1e-12 * np.linalg.norm(Jt)
