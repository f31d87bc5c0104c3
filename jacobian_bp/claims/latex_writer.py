r"""Writing expression trees back as LaTeX (the judge's corrected formulas), in the notation
:mod:`.latex_grammar` reads, so that a printed formula reads back to the same tree."""
from __future__ import annotations

from .formula_tree import Node

__all__ = ["to_latex"]


# ============================================================================ writing LaTeX back
_FUNC_TEX = {"sigma": r"\sigma", "tanh": r"\tanh", "exp": r"\exp", "log": r"\log", "sqrt": r"\sqrt",
             "relu": r"\operatorname{ReLU}", "softplus": r"\operatorname{softplus}", "abs": r"\operatorname{abs}", "sign": r"\operatorname{sign}"}
_OP_TEX = {"tr": r"\operatorname{tr}", "det": r"\det", "diag": r"\operatorname{diag}", "vec": r"\operatorname{vec}",
           "vecr": r"\operatorname{vec}_r", "softmax": r"\operatorname{softmax}", "lse": r"\operatorname{lse}",
           "sum": r"\operatorname{sum}", "mean": r"\operatorname{mean}", "rot180": r"\operatorname{rot180}",
           "full": r"\operatorname{full}", "conv2d": r"\operatorname{conv}", "avgpool": r"\operatorname{avgpool}",
           "maxpool": r"\operatorname{maxpool}", "pad": r"\operatorname{pad}", "crop": r"\operatorname{crop}",
           "dilate": r"\operatorname{dilate}", "upsample": r"\operatorname{upsample}", "corr": r"\operatorname{corr}",
           "convolve": r"\operatorname{convolve}", "norm": None, "logdet": r"\log\lvert\det"}
_PREC = {"add": 1, "sub": 1, "neg": 1, "hadamard": 2, "kron": 2, "corr": 2, "convolve": 2, "mul": 3, "cdot": 3,
         "hadamard_or_scale": 3, "div": 4}


def _sym_tex(name: str) -> str:
    from ..backend.escape import escape_text
    base, sup = (name.split("^", 1) + [""])[:2]
    base, sub = (base.split("_", 1) + [""])[:2]
    acc = None
    for a in ("hat", "tilde", "bar"):
        if sub == a or sub.endswith("_" + a):
            acc, sub = a, sub[: -len(a)].rstrip("_")
        elif sup.endswith("_" + a):
            acc, sup = a, sup[: -len(a) - 1]
    greek = base in {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "lambda",
                     "mu", "nu", "xi", "pi", "rho", "tau", "phi", "chi", "psi", "omega", "ell", "Sigma", "Delta",
                     "Gamma", "Theta", "Lambda", "Xi", "Pi", "Phi", "Psi", "Omega", "iota", "kappa", "upsilon",
                     "vartheta", "varphi"}
    if greek:
        t = "\\" + base
    elif base.isalpha():
        t = base if len(base) == 1 else r"\mathrm{" + base + "}"
    else:
        t = r"\mathrm{" + escape_text(base) + "}"
    if acc:
        t = f"\\{acc}{{{t}}}"
    safe = lambda s: "".join(ch for ch in s if ch.isalnum() or ch in "[]()+-,")  # noqa: E731
    if sub:
        t += f"_{{{safe(sub)}}}"
    if sup:
        t += f"^{{{safe(sup)}}}"
    return t


def to_latex(n: Node, parent: int = 0) -> str:
    """LaTeX of an expression tree (used for corrected formulas)."""
    op = n.op
    if op == "sym":
        return _sym_tex(str(n.attr("name")))
    if op == "num":
        v = n.attr("value")
        if v.denominator == 1:
            return str(v.numerator)
        s = rf"\frac{{{abs(v.numerator)}}}{{{v.denominator}}}"
        return ("-" if v < 0 else "") + s
    if op in ("eye", "ones", "zeros"):
        t = {"eye": r"\mathbf{I}", "ones": r"\mathbf{1}", "zeros": r"\mathbf{0}"}[op]
        k = n.attr("n")
        return t + ("" if k is None else f"_{{{k}}}")
    if op == "T":
        inner = n.args[0]
        if inner.op == "inv":
            return _wrap(inner.args[0], 5) + r"^{-\top}"
        if inner.op == "sym" and "^" in str(inner.attr("name")):
            return r"\left(" + to_latex(inner) + r"\right)^\top"
        return _wrap(inner, 5) + r"^\top"
    if op == "inv":
        return _wrap(n.args[0], 5) + "^{-1}"
    if op == "pow":
        return _wrap(n.args[0], 5) + "^{" + to_latex(n.args[1]) + "}"
    if op == "neg":
        return "-" + _wrap(n.args[0], 2)
    if op == "div":
        return rf"\frac{{{to_latex(n.args[0])}}}{{{to_latex(n.args[1])}}}"
    if op in ("add", "sub"):
        a, b = to_latex(n.args[0], 1), _wrap(n.args[1], 2 if op == "sub" else 1)
        s = f"{a} {'+' if op == 'add' else '-'} {b}"
        return f"\\left({s}\\right)" if parent > 1 else s
    if op in ("mul", "cdot", "hadamard_or_scale"):
        a, b = n.args
        sep = " " if op != "cdot" else r" \cdot "
        s = _wrap(a, 3) + sep + _wrap(b, 3 if b.op == "mul" and op == "mul" else 3.5)
        return f"\\left({s}\\right)" if parent > 3.5 else s
    if op in ("hadamard", "kron", "corr", "convolve"):
        sign = {"hadamard": r"\odot", "kron": r"\otimes", "corr": r"\star", "convolve": r"\ast"}[op]
        s = f"{_wrap(n.args[0], 2)} {sign} {_wrap(n.args[1], 2.5)}"
        return f"\\left({s}\\right)" if parent > 2 else s
    if op == "func":
        return _FUNC_TEX[n.attr("name")] + r"\left(" + to_latex(n.args[0]) + r"\right)"
    if op == "dfunc":
        return _FUNC_TEX[n.attr("name")] + r"'\left(" + to_latex(n.args[0]) + r"\right)"
    if op == "norm":
        return r"\left\lVert " + to_latex(n.args[0]) + r" \right\rVert"
    if op == "inner":
        return r"\left\langle " + to_latex(n.args[0]) + ", " + to_latex(n.args[1]) + r" \right\rangle"
    if op == "logdet":
        return r"\log\left\lvert\det " + _wrap(n.args[0], 5) + r"\right\rvert"
    head = _OP_TEX.get(op) or r"\operatorname{" + op + "}"
    p = n.attr("p")
    if p is not None:
        head += f"_{{{p}}}"
    return head + r"\left(" + ", ".join(to_latex(a) for a in n.args) + r"\right)"


def _wrap(n: Node, prec: float) -> str:
    if n.op in _PREC and _PREC[n.op] < prec:
        return r"\left(" + to_latex(n) + r"\right)"
    if n.op == "num" and n.attr("value") < 0 and prec > 1:
        return r"\left(" + to_latex(n) + r"\right)"
    if n.op == "neg" and prec > 1:
        return r"\left(" + to_latex(n) + r"\right)"
    return to_latex(n, prec)
