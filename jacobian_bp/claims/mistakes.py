r"""The mistake taxonomy of the formula judge: candidate corrections of a wrong derivative, verified.

For a claim that fails, :func:`diagnose` rewrites the claimed formula (or its layout) in the
ways textbook derivations typically go wrong, and keeps the first rewrite that makes the
claim hold -- screened in float64 on the judging instances, then *verified exactly on fresh
instances* (new sizes and values).  The rewrite becomes the corrected formula; the name of
its kind is the diagnosis.  When no rewrite works, the diagnosis says so (no misleading name).

=================================================  ====================================================
diagnosis                                          candidate corrections (most specific first)
=================================================  ====================================================
inverse instead of inverse-transpose (log|det X|)  :math:`X^{-1} \leftrightarrow X^{-\top}` when the
                                                   function contains :math:`\log|\det X|`
softmax Jacobian taken as diagonal                 :math:`\operatorname{diag}(\cdot)` around a softmax
                                                   :math:`\to \operatorname{diag}(\mathbf s)-\mathbf s\mathbf s^\top`
derivative at the activation ...                   :math:`\sigma'(\sigma(\mathbf z)) \to \sigma'(\mathbf z)`
σ′ counted twice                                   one of two equal :math:`\odot\,\sigma'(\mathbf z)` removed
another function's derivative                      :math:`g'(\mathbf z) \to f'(\mathbf z)`; a sub-formula
                                                   built from :math:`g` replaced by :math:`f'(\mathbf z)`
kernel flipped vs not                              :math:`\operatorname{rot180}(K) \leftrightarrow K`;
                                                   :math:`\star \leftrightarrow \ast`
stride ignored                                     an upstream gradient :math:`G \to \operatorname{dilate}_s(G)`
wrong axis                                         a softmax over the other axis
sign error                                         :math:`\sigma(-\mathbf x) \leftrightarrow \sigma(\mathbf x)`;
                                                   :math:`-C`
Kronecker factors swapped                          :math:`A\otimes B \to B\otimes A` (often the same as
                                                   the other vec order)
chain rule in the wrong order                      a product :math:`A_1\cdots A_k \to A_k\cdots A_1`, or
                                                   two neighbours swapped
missing factor 2 / wrong normalizer                :math:`cC` (or :math:`c` on one term) with
                                                   :math:`c` = 2, 1/2, 1/N, 1/K, 1/(NK), 1/k², 1/(H'W'),
                                                   ... (monomials of the sizes), identified across sizes
symmetry assumed                                   a transposition fix, where the claim *does* hold
                                                   when the matrices are symmetric (tested)
transpose                                          :math:`C^\top`, one operand transposed or not,
                                                   the other layout
missing factor                                     :math:`t\odot C`, :math:`tC` or :math:`Ct` with
                                                   :math:`t` one of the formula's own sub-formulas
                                                   (:math:`\sigma'(\mathbf z)`, :math:`W^\top` dropped
                                                   from a chain rule)
extra term                                         one summand of the claim's sum dropped
missing term                                       :math:`C + c\,t`: truth − claim is, on every judging
                                                   instance, :math:`c\,t` with :math:`t` a product of at
                                                   most three of the formula's own factors (the claim's
                                                   and the function's sub-formulas, symbols transposed
                                                   or not, :math:`f'(u)` for an :math:`f(u)` used, the
                                                   identity) and :math:`c` a small constant times a
                                                   monomial of the sizes (:math:`B^\top\mathbf x` in
                                                   :math:`\partial\,\mathbf x^\top B\mathbf x`,
                                                   :math:`\lambda W` of weight decay, a skip's
                                                   :math:`I`, the product rule's second term)
=================================================  ====================================================

The last three are tried last, so they never take the place of a more specific name; like every
candidate they are named only when the corrected formula holds *exactly* on fresh instances, and a
claim of zero (which "misses" everything) gets no missing-term diagnosis.

NumPy claims (:func:`~.judge.check` with a callable) have no formula to rewrite; for them the judge
tries the corrections stated with the claim (:class:`~.derivative.StatedCorrection`: a term, a
factor, or a corrected formula of a named kind), then a constant ratio truth :math:`= c\cdot` claim
named by :func:`identify_constant` (a sign, a factor 2, or a normalizer such as :math:`1/\sqrt{d_k}`
when the instances have several sizes), the transpose, and a missing identity term -- each verified
on fresh instances.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Callable, Iterator, Protocol

from .derivative import Layout, Node, num, replace_at, walk
from .formula_tree import sym, to_text
from .mistake_kinds import (ACT_AT_ACTIVATION, CHAIN_ORDER, EXTRA_TERM, FACTOR_2, KERNEL_FLIP, KINDS, KRON_SWAP,
                            LOGDET_TRANSPOSE, MISSING_FACTOR, MISSING_TERM, NORMALIZER, OTHER_FUNCTION,
                            SIGMA_PRIME_TWICE, SIGN, SOFTMAX_DIAG, STRIDE_IGNORED, SYMMETRY, TRANSPOSE, WRONG_AXIS,
                            _ELEMENTARY, Candidate, Diagnosis, _factor_node, _mono_text, _monomials, _product)
from .term_mistakes import ConstantFactor, _extra_term, _missing_factor, _missing_term, identify_constant

__all__ = ["LOGDET_TRANSPOSE", "SOFTMAX_DIAG", "ACT_AT_ACTIVATION", "SIGMA_PRIME_TWICE", "OTHER_FUNCTION",
           "KERNEL_FLIP", "STRIDE_IGNORED", "SIGN", "KRON_SWAP", "CHAIN_ORDER", "FACTOR_2", "NORMALIZER",
           "SYMMETRY", "TRANSPOSE", "WRONG_AXIS", "MISSING_TERM", "MISSING_FACTOR", "EXTRA_TERM", "KINDS", "Diagnosis",
           "diagnose", "identify_constant", "ConstantFactor", "Candidate"]


class JudgeContext(Protocol):
    """What :func:`diagnose` needs from the judge."""

    function: Node
    claimed: Node
    layout: Layout
    knobs: dict
    wrt: str

    def screen(self, formula: Node, layout: Layout | None = None) -> bool: ...  # float64, judging instances

    def verify(self, formula: Node, layout: Layout | None = None) -> bool: ...  # exact, fresh instances

    def holds_symmetric(self) -> bool: ...  # the original claim at a symmetric point

    def ratios(self, formula: Node, term: Node | None) -> list | None: ...  # constant truth/claim per instance

    def size_values(self) -> list[dict]: ...  # named sizes and knobs per judging instance

    def matches(self, sub: Node, target: Node) -> bool: ...  # numerically equal sub-formulas

    def float_values(self, formula: Node, want: bool = True) -> list | None: ...  # float64, judging instances

    def residuals(self) -> list | None: ...  # truth − claim, float64, judging instances

    def truths_float(self) -> list: ...  # the truth, float64, judging instances


# ============================================================================ helpers
def _syms(n: Node) -> set:
    return {x.attr("name") for _, x in walk(n) if x.op == "sym"}


def _funcs(n: Node) -> set:
    return {x.attr("name") for _, x in walk(n) if x.op in ("func", "dfunc")}


def _ops(n: Node) -> set:
    return {x.op for _, x in walk(n)}


def _parent(path):
    return path[:-1]


def _get(n: Node, path) -> Node:
    for i in path:
        n = n.args[i]
    return n


def _chain(n: Node) -> list:
    """Factors of a product chain ``A B C`` (mul nodes, left-nested)."""
    if n.op == "mul":
        return _chain(n.args[0]) + _chain(n.args[1])
    return [n]



def _tx(n: Node) -> Node:
    """Transpose, cancelling a double transpose."""
    return n.args[0] if n.op == "T" else Node("T", (n,))


# ============================================================================ candidate generators
def _logdet(ctx) -> Iterator[Candidate]:
    if "logdet" not in _ops(ctx.function):
        return
    for path, n in walk(ctx.claimed):
        if n.op == "inv":
            par = _get(ctx.claimed, _parent(path)) if path else None
            if par is not None and par.op == "T":
                yield Candidate(LOGDET_TRANSPOSE, "X⁻¹ for X⁻ᵀ: ∂log|det X|/∂X = X⁻ᵀ (Cookbook eq. 57)",
                                replace_at(ctx.claimed, _parent(path), n))
            else:
                yield Candidate(LOGDET_TRANSPOSE, "X⁻ᵀ for X⁻¹: ∂log|det X|/∂X = X⁻ᵀ, not X⁻¹ (Cookbook eq. 57)",
                                replace_at(ctx.claimed, path, Node("T", (n,))))


def _softmax_diag(ctx) -> Iterator[Candidate]:
    if not ({"softmax", "lse"} & _ops(ctx.function)):
        return
    soft = [n for _, n in walk(ctx.claimed) if n.op == "softmax"]
    if not soft:
        soft = [Node("softmax", x.args) for _, x in walk(ctx.function) if x.op in ("softmax", "lse")]
    for path, n in walk(ctx.claimed):
        if n.op == "diag":
            for s in soft[:2]:
                full = Node("sub", (Node("diag", (s,)), Node("mul", (s, Node("T", (s,))))))
                yield Candidate(SOFTMAX_DIAG, "the full softmax Jacobian diag(s) − s sᵀ, not a diagonal",
                                replace_at(ctx.claimed, path, full))


def _act_at_activation(ctx) -> Iterator[Candidate]:
    for path, n in walk(ctx.claimed):
        if n.op == "dfunc" and n.args[0].op == "func":
            yield Candidate(ACT_AT_ACTIVATION,
                            f"{n.attr('name')}′ evaluated at the pre-activation, not at the activation "
                            f"{n.args[0].attr('name')}(·)",
                            replace_at(ctx.claimed, path, Node("dfunc", n.args[0].args, n.attrs)))


def _sigma_twice(ctx) -> Iterator[Candidate]:
    seen = [(p, n) for p, n in walk(ctx.claimed) if n.op == "dfunc"]
    dup = [p for p, n in seen if sum(1 for _, m in seen if m == n) >= 2]
    for p in dup:
        par_path = _parent(p)
        if not p:
            continue
        par = _get(ctx.claimed, par_path)
        if par.op in ("hadamard", "hadamard_or_scale", "mul"):
            other = par.args[1 - p[-1]]
            yield Candidate(SIGMA_PRIME_TWICE, "one factor σ′(z) too many (it is already in δ)",
                            replace_at(ctx.claimed, par_path, other))




def _other_function(ctx) -> Iterator[Candidate]:
    fn_funcs = {x.attr("name") for _, x in walk(ctx.function) if x.op == "func"}
    if not fn_funcs:
        return
    for path, n in walk(ctx.claimed):
        if n.op == "dfunc" and n.attr("name") not in fn_funcs:
            for f in sorted(fn_funcs):
                yield Candidate(OTHER_FUNCTION, f"{n.attr('name')}′ is the derivative of another function: use {f}′",
                                replace_at(ctx.claimed, path, Node("dfunc", n.args, (("name", f),))))
    # a sub-formula built from another function g that equals g'(u): replace it by f'(u)
    foreign = [(p, n) for p, n in walk(ctx.claimed) if n.op == "func" and n.attr("name") not in fn_funcs]
    if not foreign:
        return
    args = {n.args[0] for _, n in foreign}
    for path, sub in walk(ctx.claimed):
        if not any(x.op == "func" and x.attr("name") not in fn_funcs for _, x in walk(sub)):
            continue
        for u in args:
            for g in _ELEMENTARY:
                if g in fn_funcs:
                    continue
                if ctx.matches(sub, Node("dfunc", (u,), (("name", g),))):
                    for f in sorted(fn_funcs):
                        yield Candidate(OTHER_FUNCTION,
                                        f"the formula is {g}′ (the derivative of {g}), the function uses {f}: use {f}′",
                                        replace_at(ctx.claimed, path, Node("dfunc", (u,), (("name", f),))))


def _kernel_flip(ctx) -> Iterator[Candidate]:
    conv_ops = {"conv2d", "corr", "convolve", "full"}
    if not (conv_ops & (_ops(ctx.function) | _ops(ctx.claimed))):
        return
    for path, n in walk(ctx.claimed):
        if n.op == "rot180":
            yield Candidate(KERNEL_FLIP, "no rot180: the kernel is not flipped here", replace_at(ctx.claimed, path, n.args[0]))
        elif n.op in ("corr", "convolve"):
            other = "convolve" if n.op == "corr" else "corr"
            yield Candidate(KERNEL_FLIP, f"{'convolution' if other == 'convolve' else 'cross-correlation'} "
                            f"instead of {'cross-correlation' if other == 'convolve' else 'convolution'} (kernel flipped)",
                            replace_at(ctx.claimed, path, Node(other, n.args)))
    for path, n in walk(ctx.claimed):
        if n.op in ("corr", "convolve", "full") and n.args[1].op != "rot180":
            yield Candidate(KERNEL_FLIP, "the kernel flipped (rot180)",
                            replace_at(ctx.claimed, path + (1,), Node("rot180", (n.args[1],))))
    yield Candidate(KERNEL_FLIP, "the result flipped (rot180)", Node("rot180", (ctx.claimed,)))


def _stride(ctx) -> Iterator[Candidate]:
    s = ctx.knobs.get("s", 1)
    if not isinstance(s, int) or s <= 1:
        return
    if any(n.op == "dilate" for _, n in walk(ctx.claimed)):
        return
    for path, n in walk(ctx.claimed):
        if n.op == "sym" and n.attr("name") != ctx.wrt:
            yield Candidate(STRIDE_IGNORED, f"the upstream gradient {n.attr('name')} dilated by the stride s = {s} "
                            f"(zeros between its entries)", replace_at(ctx.claimed, path, Node("dilate", (n,), (("p", "s"),))))


def _axis(ctx) -> Iterator[Candidate]:
    for path, n in walk(ctx.claimed):
        if n.op in ("softmax", "lse"):
            a = n.args[0]
            if a.op == "T" and path and _get(ctx.claimed, _parent(path)).op == "T":
                yield Candidate(WRONG_AXIS, f"{n.op} over the other axis (columns)",
                                replace_at(ctx.claimed, _parent(path), Node(n.op, (a.args[0],))))
            else:
                yield Candidate(WRONG_AXIS, f"{n.op} over the other axis (rows)",
                                replace_at(ctx.claimed, path, Node("T", (Node(n.op, (Node("T", (a,)),)),))))


def _sign(ctx) -> Iterator[Candidate]:
    for path, n in walk(ctx.claimed):
        if n.op in ("func", "dfunc"):
            a = n.args[0]
            new = a.args[0] if a.op == "neg" else Node("neg", (a,))
            yield Candidate(SIGN, f"sign inside the argument of {n.attr('name')}: {n.attr('name')}"
                            f"({'x' if a.op == 'neg' else '−x'}) for {n.attr('name')}({'−x' if a.op == 'neg' else 'x'})",
                            replace_at(ctx.claimed, path + (0,), new))
    c = ctx.claimed
    yield Candidate(SIGN, "the opposite sign", c.args[0] if c.op == "neg" else Node("neg", (c,)))
    if c.op in ("add", "sub"):
        for i in (0, 1):
            t = c.args[i]
            yield Candidate(SIGN, "the opposite sign of one term",
                            replace_at(c, (i,), t.args[0] if t.op == "neg" else Node("neg", (t,))))
        yield Candidate(SIGN, "the opposite sign of one term", Node("add" if c.op == "sub" else "sub", c.args))


def _kron(ctx) -> Iterator[Candidate]:
    for path, n in walk(ctx.claimed):
        if n.op == "kron":
            other_vec = Layout(ctx.layout.layout, "row" if ctx.layout.vec == "column" else "column")
            note = ""
            if ctx.screen(ctx.claimed, other_vec):
                note = f" (equivalently, the claim holds with {other_vec.vec}-major vec)"
            yield Candidate(KRON_SWAP, "the Kronecker factors in the other order" + note,
                            replace_at(ctx.claimed, path, Node("kron", (n.args[1], n.args[0]))))


def _chain_order(ctx) -> Iterator[Candidate]:
    for path, n in walk(ctx.claimed):
        if n.op != "mul" or (path and _get(ctx.claimed, _parent(path)).op == "mul"):
            continue
        fs = _chain(n)
        if len(fs) < 2 or any(f.op == "num" for f in fs):
            continue
        yield Candidate(CHAIN_ORDER, "the factors multiplied in the opposite order",
                        replace_at(ctx.claimed, path, _product(fs[::-1])))
        if len(fs) > 2:
            for i in range(len(fs) - 1):
                g = list(fs)
                g[i], g[i + 1] = g[i + 1], g[i]
                yield Candidate(CHAIN_ORDER, "two neighbouring factors swapped", replace_at(ctx.claimed, path, _product(g)))



def _factors(ctx) -> Iterator[Candidate]:
    sizes = ctx.size_values()
    names = sorted({k for s in sizes for k in s})
    c = ctx.claimed
    targets = [(None, c)]
    if c.op in ("add", "sub"):
        targets += [((0,), c.args[0]), ((1,), c.args[1])]
    for path, term in targets:
        rs = ctx.ratios(c, term if path is not None else None)
        if not rs:
            continue
        found = 0
        for const, mono in _monomials(names):
            if found >= 6:
                break
            ok = True
            for r, sz in zip(rs, sizes):
                v = Fraction(const)
                for nm, e in mono.items():
                    v *= Fraction(sz[nm]) ** e
                if abs(float(v) - r) > 1e-7 * max(1.0, abs(r)):
                    ok = False
                    break
            if not ok:
                continue
            kind = FACTOR_2 if (const == 2 and not mono) else NORMALIZER
            fac = _factor_node(const, mono)
            where = "" if path is None else " on one term"
            desc = (f"a factor {_mono_text(const, mono)} missing{where}" if kind == FACTOR_2 else
                    f"the normalizer: multiply{where} by {_mono_text(const, mono)}")
            new = Node("mul", (fac, c)) if path is None else replace_at(c, path, Node("mul", (fac, term)))
            found += 1
            yield Candidate(kind, desc, new)


def _normalizer_shift(ctx) -> Iterator[Candidate]:
    r"""A size normalizer off by one: :math:`\frac{1}{n-1}` for :math:`\frac1n` (the unbiased for the biased
    variance), or :math:`\frac1n` / :math:`\frac{1}{n+1}` for :math:`\frac{1}{n-1}`: every denominator that is a
    named size :math:`n` or :math:`n \pm 1` is replaced by the other two (the ratio is no power of the sizes, so
    :func:`_factors` cannot name it)."""
    names = {k for s in ctx.size_values() for k in s}
    c = ctx.claimed

    def size_of(d: Node):
        if d.op == "sym" and d.attr("name") in names:
            return d.attr("name"), 0
        if d.op in ("add", "sub") and d.args[0].op == "sym" and d.args[0].attr("name") in names \
                and d.args[1].op == "num" and d.args[1].attr("value") == 1:
            return d.args[0].attr("name"), 1 if d.op == "add" else -1
        return None

    for path, n in walk(c):
        hit = size_of(n.args[1]) if n.op == "div" and len(n.args) == 2 else None
        if hit is None:
            continue
        name, shift = hit
        for other in (-1, 0, 1):
            if other == shift:
                continue
            den = sym(name) if other == 0 else Node("add" if other > 0 else "sub", (sym(name), num(1)))
            yield Candidate(NORMALIZER, f"the normalizer {to_text(den)} for {to_text(n.args[1])}",
                            replace_at(c, path, Node("div", (n.args[0], den))))


def _transposes(ctx) -> Iterator[Candidate]:
    c = ctx.claimed
    yield Candidate(TRANSPOSE, "the transpose of the claimed formula", _tx(c), transposition=True)
    other = Layout("numerator" if ctx.layout.layout == "denominator" else "denominator", ctx.layout.vec)
    yield Candidate(TRANSPOSE, f"the claim is the {other.layout}-layout derivative", c, layout=other, transposition=True)
    for path, n in walk(c):
        if n.op == "T" and path:
            yield Candidate(TRANSPOSE, f"no transpose on {n.args[0]}", replace_at(c, path, n.args[0]), transposition=True)
        if n.op == "sym" and path is not None and not (path and _get(c, _parent(path)).op == "T"):
            yield Candidate(TRANSPOSE, f"{n.attr('name')}ᵀ for {n.attr('name')}", replace_at(c, path, Node("T", (n,))),
                            transposition=True)
    for path, n in walk(c):
        if n.op == "inv" or (n.op == "T" and n.args[0].op == "inv"):
            inv = n if n.op == "inv" else n.args[0]
            yield Candidate(TRANSPOSE, f"½(M⁻¹ + M⁻ᵀ) for {n}",
                            replace_at(c, path, Node("mul", (num(Fraction(1, 2)), Node("add", (inv, Node("T", (inv,))))))),
                            transposition=True)
        if n.op == "sym" and n.attr("name") != ctx.wrt:
            par = _get(c, _parent(path)) if path else None
            half = Node("add", (n, Node("T", (n,))))
            if par is not None and par.op == "mul" and par.args[0].op == "num" and par.args[0].attr("value") == 2 \
                    and path[-1] == 1:
                yield Candidate(TRANSPOSE, f"{n.attr('name')} + {n.attr('name')}ᵀ for 2{n.attr('name')}",
                                replace_at(c, _parent(path), half), transposition=True)
            else:
                yield Candidate(TRANSPOSE, f"½({n.attr('name')} + {n.attr('name')}ᵀ) for {n.attr('name')}",
                                replace_at(c, path, Node("mul", (num(Fraction(1, 2)), half))), transposition=True)



GENERATORS: tuple[Callable, ...] = (_logdet, _softmax_diag, _act_at_activation, _sigma_twice, _other_function,
                                    _kernel_flip, _stride, _axis, _kron, _chain_order, _sign, _factors, _normalizer_shift,
                                    _transposes,
                                    _missing_factor, _extra_term, _missing_term)


def diagnose(ctx: JudgeContext, budget: int = 400) -> Diagnosis | None:
    """The first candidate correction that makes the claim hold (screened, then verified exactly on
    fresh instances), or ``None`` when no single correction fits."""
    tried = 0
    seen = set()
    for gen in GENERATORS:
        for cand in gen(ctx):
            key = (cand.formula, cand.layout)
            if key in seen:
                continue
            seen.add(key)
            tried += 1
            if tried > budget:
                return None
            if not ctx.screen(cand.formula, cand.layout):
                continue
            if not ctx.verify(cand.formula, cand.layout):
                continue
            kind = cand.kind
            note = ""
            if cand.transposition and ctx.holds_symmetric():
                kind = SYMMETRY
                note = "the claim holds when the matrices are symmetric, and fails for generic ones"
            return Diagnosis(kind, cand.description, cand.formula, cand.layout, note)
    return None

