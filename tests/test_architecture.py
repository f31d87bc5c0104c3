"""The house's invariants (shared architecture notes), measured from the package's own source.

* every module sits on a floor, and imports only its own floor or lower ones (the ``_repr_latex_``
  display hooks excepted: they may import ``render`` lazily);
* no import circles between modules;
* no ``kind ==`` branch outside ``layers/`` and ``oracles/``: a consumer asks the layer, it does not
  switch on its kind;
* no module over ``MAX_LINES`` lines.

Known violations are listed by name and may only shrink: a new one fails the test, and so does a
listed one that has been fixed (remove it from the list).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jacobian_bp"
FLOORS = {"errors": 0, "backend": 1, "layers": 2, "engine": 3, "spec": 4, "symbolic": 4, "uses": 4, "oracles": 4,
          "render": 5, "claims": 5, "documents": 6, "cli": 7, "__init__": 8, "__main__": 8}
HOOK = re.compile(r"_repr_latex_")
MAX_LINES = 700

KNOWN_UPWARD: set[str] = set()
KNOWN_CIRCLES: set[frozenset] = set()
# what is left to move into the layers (issue #12): may only shrink
KNOWN_KIND_BRANCH_MODULES: dict[str, int] = {}
KNOWN_LARGE: set[str] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in p.parts:
            continue
        parts = list(p.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _floor(mod: str) -> int | None:
    return FLOORS.get(mod.split(".")[0])


def _imports(mod: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported package module, line, inside a display hook) for every package-internal import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    base = [] if mod == "__init__" else (mod.split(".") if is_pkg else mod.split(".")[:-1])
    out = []

    def resolve(target: str) -> str | None:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        return target or None

    def visit(node, hook=False):
        for child in ast.iter_child_nodes(node):
            h = hook or (isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and bool(HOOK.search(child.name)))
            targets = []
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    b = base[: len(base) - (child.level - 1)] if child.level > 1 else base
                    stem = ".".join(b + ([child.module] if child.module else []))
                elif child.module and child.module.split(".")[0] == "jacobian_bp":
                    stem = child.module.partition(".")[2]
                else:
                    stem = None
                if stem is not None:
                    targets = [f"{stem}.{a.name}" if stem else a.name for a in child.names] + ([stem] if stem else [])
            elif isinstance(child, ast.Import):
                targets = [a.name.partition(".")[2] for a in child.names if a.name.startswith("jacobian_bp.")]
            seen = set()
            for t in targets:
                r = resolve(t)
                if r and r != mod and r not in seen:
                    seen.add(r)
                    out.append((r, child.lineno, h))
            visit(child, h)

    visit(tree)
    return out


def _graph() -> dict[str, list[tuple[str, int, bool]]]:
    return {m: _imports(m, p) for m, p in MODULES.items()}


def test_every_module_is_on_a_floor():
    assert [m for m in MODULES if _floor(m) is None] == []


def test_no_upward_imports():
    upward = set()
    for mod, imps in _graph().items():
        for t, line, hook in imps:
            if not hook and _floor(t) > _floor(mod):
                upward.add(f"{mod} -> {t}")
    assert upward - KNOWN_UPWARD == set(), "imports that run up a floor"
    assert KNOWN_UPWARD - upward == set(), "fixed: remove from KNOWN_UPWARD"


def _circles(graph) -> set[frozenset]:
    edges = {m: {t for t, _, _ in imps if not t.endswith("__init__") and _floor(t) is not None
                 and MODULES[t].name != "__init__.py"} for m, imps in graph.items() if MODULES[m].name != "__init__.py"}
    index, low, stack, on, out, counter = {}, {}, [], set(), set(), [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.add(frozenset(comp))

    for v in edges:
        if v not in index:
            strong(v)
    return out


def test_no_import_circles():
    circles = _circles(_graph())
    assert circles - KNOWN_CIRCLES == set(), "new import circles"
    assert KNOWN_CIRCLES - circles == set(), "fixed: remove from KNOWN_CIRCLES"


KIND_BRANCH = re.compile(r"\.kind\s*(==|!=|\bin\b|\bnot in\b)|\bkind\s*==\s*['\"]")


def _kind_branches() -> dict[str, int]:
    out = {}
    for mod, path in MODULES.items():
        if mod.split(".")[0] in ("layers", "oracles"):
            continue
        n = sum(1 for ln in path.read_text(encoding="utf-8").splitlines() if KIND_BRANCH.search(ln))
        if n:
            out[mod] = n
    return out


def test_no_kind_branches_outside_layers_and_oracles():
    found = _kind_branches()
    grown = {m: n for m, n in found.items() if n > KNOWN_KIND_BRANCH_MODULES.get(m, 0)}
    assert grown == {}, "kind branches outside layers/ and oracles/ (ask the layer instead)"
    shrunk = {m: n for m, n in KNOWN_KIND_BRANCH_MODULES.items() if found.get(m, 0) < n}
    assert shrunk == {}, f"fewer kind branches now: lower KNOWN_KIND_BRANCH_MODULES to {found}"


def test_module_size():
    large = {m for m, p in MODULES.items() if p.read_text(encoding="utf-8").count("\n") > MAX_LINES}
    assert large - KNOWN_LARGE == set(), f"modules over {MAX_LINES} lines"
    assert KNOWN_LARGE - large == set(), "fixed: remove from KNOWN_LARGE"


@pytest.mark.parametrize("bad", [
    "import os\nos.system('x')\n",
])
def test_the_kind_branch_pattern_is_not_vacuous(bad):
    assert KIND_BRANCH.search("if layer.kind == 'dense':")
    assert KIND_BRANCH.search('elif kind == "relu":')
    assert not KIND_BRANCH.search(bad)
