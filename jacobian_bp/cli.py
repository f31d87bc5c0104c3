"""The ``jacobian-bp`` command line.

::

    jacobian-bp examples                       list the built-in example specs
    jacobian-bp show SPEC                      the network, its θ layout and Jacobian block shapes
    jacobian-bp verify SPEC                    verification report (exit 1 on FAIL)
    jacobian-bp gradient SPEC -o grad.npz      ∇θℓ keyed by parameter name (+ "theta")
    jacobian-bp jacobian SPEC -o J.npz         J_θ z[L] (or J_x z[L] with --wrt input) as sparse .npz
    jacobian-bp latex SPEC -o file.tex [--pdf] a standalone derivation document
    jacobian-bp errata [--markdown F] [--latex F]   the errata report of the four documents

SPEC is a built-in example name (``damadi-1layer``, ``damadi-2layer``, ``lenet-300-100``, …)
or a JSON file (see :mod:`jacobian_bp.spec`).  Parameters come from ``--params FILE.npz``
(keys ``W1``, ``b1``, … in the convention's layout) or from ``--param-seed``; data from
``--data FILE.npz`` (keys ``x``, ``y``) or from ``--seed`` and ``--batch``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .errors import DataError, JacobianBPError


def _load_npz(path: str, what: str) -> dict[str, np.ndarray]:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{what} file {path!r} does not exist")
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001 - any unreadable file
        raise DataError(f"{what} file {path!r} is not a readable .npz: {exc}") from None


def _setup(args):
    from .spec import generate_data, load_spec

    spec = load_spec(args.spec)
    net = spec.network
    if getattr(args, "params", None):
        params = _load_npz(args.params, "parameters")
        net.canonical_params(params)  # validates names, shapes, finiteness
    else:
        params = net.init_params(spec.param_seed if args.param_seed is None else args.param_seed)
    if getattr(args, "data", None):
        d = _load_npz(args.data, "data")
        if set(d) != {"x", "y"}:
            raise DataError(f"data file {args.data!r}: expected exactly the keys 'x' and 'y', found {sorted(d)}")
        X, Y = d["x"], d["y"]
    else:
        batch = spec.batch if args.batch is None else args.batch
        seed = spec.data_seed if args.seed is None else args.seed
        X, Y = generate_data(net, batch, seed)
    return spec, net, params, X, Y


def _cmd_examples(args) -> int:
    from .spec import EXAMPLES, load_spec

    for name, raw in EXAMPLES.items():
        try:
            net = load_spec(name).network
            print(f"{name:<16} |θ| = {net.n_params:<8} {raw.get('description', '')}")
        except JacobianBPError as exc:  # pragma: no cover - e.g. an optional layer family missing
            print(f"{name:<16} unavailable: {exc}")
    return 0


def _cmd_show(args) -> int:
    spec, net, params, X, Y = _setup(args)
    print(net.describe())
    print(net.convention.describe())
    print(f"θ layout ({net.n_params} entries):")
    for e in net.entries:
        print(f"  {e.name:<4} {str(e.user_shape):<14} θ[{e.offset}:{e.offset + e.size}]  {e.space.describe()}")
    x = X if np.ndim(X) == len(net.input_shape) else net.as_batch(X)[0][0]
    J = net.jacobian_theta(x, params)
    print(f"J_θ z[{net.L}] ∈ R^{{{J.shape[0]}×{J.shape[1]}}}; blocks:")
    for b in J.blocks:
        print(f"  J_[{b.input.name}] z[{net.L}]: {b.shape[0]}x{b.shape[1]} ({b.structure})")
    return 0


def _cmd_verify(args) -> int:
    from .verify import verify

    spec, net, params, X, Y = _setup(args)
    rep = verify(net, X, Y, params, use_torch=not args.no_torch, fd_max_coords=args.fd_coords)
    print(json.dumps(rep.to_dict(), indent=2, default=float) if args.json else rep.to_text())
    return 0 if rep.passed else 1


def _cmd_gradient(args) -> int:
    spec, net, params, X, Y = _setup(args)
    g = net.gradient(X, Y, params, method=args.method)
    np.savez(args.output, theta=g.vector, **g.params)
    print(f"wrote ∇θℓ of {net.name} ({net.n_params} entries, convention {net.convention.name}, "
          f"loss {net.loss_value(X, Y, params):.10g}) to {args.output}")
    return 0


def _cmd_jacobian(args) -> int:
    spec, net, params, X, Y = _setup(args)
    single = np.ndim(X) == len(net.input_shape)
    if args.wrt == "theta":
        J = net.jacobian_theta(X, params) if single else net.batch_jacobian_theta(X, params)
    else:
        J = net.jacobian_input(X, params) if single else net.batch_jacobian_input(X, params)
    M = J.to_sparse()
    sp.save_npz(args.output, sp.csr_matrix(M))
    print(f"wrote J_[{J.input.name}] {J.output.name} ∈ R^{M.shape[0]}x{M.shape[1]} ({M.nnz} nonzeros) to {args.output}")
    return 0


def _cmd_latex(args) -> int:
    from . import derivation

    spec, net, params, X, Y = _setup(args)
    tex = derivation.derivation_document(net, params, X, Y)
    out = Path(args.output)
    out.write_text(tex, encoding="utf-8")
    print(f"wrote {out}")
    if args.pdf:
        pdf = derivation.compile_pdf(out)
        print(f"wrote {pdf}")
    return 0


def _cmd_errata(args) -> int:
    from . import errata

    rep = errata.build_errata()
    print(rep.to_text())
    if args.markdown:
        Path(args.markdown).write_text(rep.to_markdown(), encoding="utf-8")
        print(f"wrote {args.markdown}")
    if args.latex:
        Path(args.latex).write_text(rep.to_latex(), encoding="utf-8")
        print(f"wrote {args.latex}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jacobian-bp", description="Backpropagation as an explicit product of Jacobians.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_spec(sp_, data=True):
        sp_.add_argument("spec", help="built-in example name or JSON spec file")
        sp_.add_argument("--params", help=".npz of parameters keyed W1, b1, … (convention layout)")
        sp_.add_argument("--param-seed", type=int, default=None, help="seed for generated parameters")
        if data:
            sp_.add_argument("--data", help=".npz with keys x and y")
            sp_.add_argument("--seed", type=int, default=None, help="seed for generated data")
            sp_.add_argument("--batch", type=int, default=None, help="batch size of generated data")

    sub.add_parser("examples", help="list built-in examples").set_defaults(func=_cmd_examples)
    s = sub.add_parser("show", help="network, θ layout and Jacobian blocks")
    with_spec(s)
    s.set_defaults(func=_cmd_show)
    s = sub.add_parser("verify", help="verification report")
    with_spec(s)
    s.add_argument("--no-torch", action="store_true", help="skip the PyTorch oracle")
    s.add_argument("--fd-coords", type=int, default=60, help="finite-difference coordinates per block (default 60)")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(func=_cmd_verify)
    s = sub.add_parser("gradient", help="write ∇θℓ to .npz")
    with_spec(s)
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--method", choices=["chain", "operator"], default="chain")
    s.set_defaults(func=_cmd_gradient)
    s = sub.add_parser("jacobian", help="write J_θ z[L] (or J_x z[L]) as sparse .npz")
    with_spec(s)
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--wrt", choices=["theta", "input"], default="theta")
    s.set_defaults(func=_cmd_jacobian)
    s = sub.add_parser("latex", help="write a standalone LaTeX derivation")
    with_spec(s)
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--pdf", action="store_true", help="also compile with pdflatex")
    s.set_defaults(func=_cmd_latex)
    s = sub.add_parser("errata", help="errata report of the four source documents")
    s.add_argument("--markdown", help="write Markdown here")
    s.add_argument("--latex", help="write LaTeX here")
    s.set_defaults(func=_cmd_errata)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (JacobianBPError, MemoryError) as exc:
        print(f"jacobian-bp: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
