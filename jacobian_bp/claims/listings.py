"""Checking a :class:`~.model.ListingClaim`: a printed code listing parsed with :mod:`ast` (never executed)."""
from __future__ import annotations

import ast
import builtins

from .diagnose import _dedupe
from .model import HOLDS, ILL_TYPED, CheckResult, Counterexample, Explanation, ListingClaim, Mistake


_BUILTINS = frozenset(dir(builtins))


def _check_listing(claim: ListingClaim) -> CheckResult:
    """Parse a listing with :mod:`ast` (never execute it); report syntax errors and undefined names.

    A ``def`` line missing its colon is reported, repaired, and the analysis goes on, so
    that every problem of the listing is listed.
    """
    src = claim.source
    problems: list[str] = []
    fixes: list[Explanation] = []
    tree = None
    for _ in range(10):
        try:
            tree = ast.parse(src)
            break
        except SyntaxError as exc:
            line = (exc.text or "").rstrip("\n")
            problems.append(f"not valid Python: {exc.msg} at line {exc.lineno}: {line.strip()!r}")
            lines = src.split("\n")
            if exc.lineno and line.strip().startswith("def ") and not line.rstrip().endswith(":"):
                fixes.append(Explanation(Mistake.CUSTOM, f"missing ':' after {line.strip()!r}"))
                lines[exc.lineno - 1] = lines[exc.lineno - 1].rstrip() + ":"
                src = "\n".join(lines)
                continue
            break
    if tree is not None:
        defined = set(claim.inputs) | _BUILTINS
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                defined.add(node.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for a in node.names:
                    defined.add((a.asname or a.name).split(".")[0])
            elif isinstance(node, ast.arg):
                defined.add(node.arg)
        used = sorted({(n.id, n.lineno) for n in ast.walk(tree)
                       if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in defined},
                      key=lambda t: (t[1], t[0]))
        if used:
            problems.append("uses undefined name(s) " + ", ".join(f"{n!r} (line {ln})" for n, ln in used))
            for n, _ in used:
                close = sorted(d for d in defined - _BUILTINS if _one_edit_apart(n, d))
                if close:
                    fixes.append(Explanation(Mistake.CUSTOM, f"{n!r} should be {close[0]!r}"))
    if not problems:
        return CheckResult(claim.name, HOLDS, "", "static", n_instances=1)
    reason = "; ".join(problems)
    res = CheckResult(claim.name, ILL_TYPED, reason, "static", n_instances=1)
    res.counterexample = Counterexample((), 0, 1, None, reason)
    res.diagnosis = _dedupe(fixes)
    return res


def _one_edit_apart(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by a few inserted/deleted letters (``Ws``/``W``, ``backward_x``/``back_x``)."""
    if a == b:
        return False
    short, long_ = sorted((a, b), key=len)
    if len(long_) - len(short) > 4:
        return False
    # prefix + suffix of the longer equal the shorter
    for i in range(len(short) + 1):
        for extra in range(1, 5):
            if long_[:i] + long_[i + extra:] == short:
                return True
    return False
