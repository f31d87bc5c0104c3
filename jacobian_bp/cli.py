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

Every output file is written atomically (a temporary file in the same folder, renamed over
the target on success): the path given is exactly the path written, and a failed run leaves
no partial file.  Errors are one line ``jacobian-bp: error: …`` on stderr, never a traceback.

Exit codes
----------
0
    success (``verify``: every check passed)
1
    ``verify``: a check failed (the report says which)
2
    usage error or bad input: an unknown option, an invalid spec, parameters or data, an
    unreadable input or unwritable output file, a non-finite loss or gradient
3
    internal error (a bug: please report it); set ``JACOBIAN_BP_DEBUG=1`` for the traceback
130
    interrupted (Ctrl-C)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .backend.atomic import atomic_file, check_writable
from .errors import DataError, JacobianBPError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """exit codes:
  0    success (verify: every check passed)
  1    verify: a check failed
  2    usage error or bad input (spec, parameters, data, unreadable/unwritable file,
       non-finite loss or gradient)
  3    internal error (please report; JACOBIAN_BP_DEBUG=1 shows the traceback)
  130  interrupted"""

#: the phrase of the range checks below; their errors are reported as one line (bad input)
_RANGE = "must be an integer >="


def _int_at_least(minimum: int, name: str):
    """An argparse ``type`` accepting integers >= ``minimum`` (``int`` syntax errors keep argparse's form)."""

    def parse(text: str) -> int:
        v = int(text)  # ValueError -> argparse: "invalid int value"
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{_RANGE} {minimum}, received {v}")
        return v

    parse.__name__ = "int"
    return parse


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors for out-of-range values (bad input, not bad usage)."""

    def error(self, message: str):  # noqa: D102 - argparse API
        if _RANGE in message:
            self.exit(EXIT_USAGE, f"jacobian-bp: error: {message} (see '{self.prog} --help')\n")
        super().error(message)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _load_npz(path: str, what: str) -> dict[str, np.ndarray]:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{what} file {path!r} does not exist")
    if not p.is_file():
        raise DataError(f"{what} file {path!r} is not a file")
    try:
        with np.load(p, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise DataError(f"{what} file {path!r} is a .npy array, not an .npz archive of named arrays")
            return {k: z[k] for k in z.files}
    except JacobianBPError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file
        raise DataError(f"{what} file {path!r} is not a readable .npz: {_one_line(exc)}") from None


def _setup(args):
    from .spec import generate_data, load_spec

    spec = load_spec(args.spec)
    net = spec.network
    if getattr(args, "params", None):
        params = _load_npz(args.params, "parameters")
        net.canonical_params(params)  # validates names, shapes, dtypes, finiteness
    else:
        params = net.init_params(spec.param_seed if args.param_seed is None else args.param_seed)
    if getattr(args, "data", None):
        d = _load_npz(args.data, "data")
        if set(d) != {"x", "y"}:
            raise DataError(f"data file {args.data!r}: expected exactly the keys 'x' and 'y', found {sorted(d)}")
        X, Y = d["x"], d["y"]
        net.as_batch(X, Y)  # validates shapes, dtypes, finiteness and targets
    else:
        batch = spec.batch if args.batch is None else args.batch
        seed = spec.data_seed if args.seed is None else args.seed
        X, Y = generate_data(net, batch, seed)
    return spec, net, params, X, Y


def _output(path: str) -> Path:
    """Check an output path before any work is done (the write itself is atomic)."""
    return check_writable(path)


def _cmd_examples(args) -> int:
    from .spec import EXAMPLES, load_spec

    for name, raw in EXAMPLES.items():
        try:
            net = load_spec(name).network
            print(f"{name:<16} |θ| = {net.n_params:<8} {raw.get('description', '')}")
        except JacobianBPError as exc:  # pragma: no cover - e.g. an optional layer family missing
            print(f"{name:<16} unavailable: {exc}")
    return EXIT_OK


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
    return EXIT_OK


def _cmd_verify(args) -> int:
    from .oracles.verify import verify

    spec, net, params, X, Y = _setup(args)
    net.loss_value(X, Y, params)  # a non-finite loss is bad input (exit 2), not a failed check
    rep = verify(net, X, Y, params, use_torch=not args.no_torch, fd_max_coords=args.fd_coords)
    print(json.dumps(rep.to_dict(), indent=2, default=float) if args.json else rep.to_text())
    return EXIT_OK if rep.passed else EXIT_FAILED


def _cmd_gradient(args) -> int:
    out = _output(args.output)
    spec, net, params, X, Y = _setup(args)
    loss = net.loss_value(X, Y, params)
    g = net.gradient(X, Y, params, method=args.method)
    with atomic_file(out) as fh:  # a file object: np.savez appends ".npz" to a bare name
        np.savez(fh, theta=g.vector, **g.params)
    print(f"wrote ∇θℓ of {net.name} ({net.n_params} entries, convention {net.convention.name}, "
          f"loss {loss:.10g}) to {out}")
    return EXIT_OK


def _cmd_jacobian(args) -> int:
    out = _output(args.output)
    spec, net, params, X, Y = _setup(args)
    single = np.ndim(X) == len(net.input_shape)
    if args.wrt == "theta":
        J = net.jacobian_theta(X, params) if single else net.batch_jacobian_theta(X, params)
    else:
        J = net.jacobian_input(X, params) if single else net.batch_jacobian_input(X, params)
    M = sp.csr_matrix(J.to_sparse())
    if M.dtype != object and not np.all(np.isfinite(M.data)):
        raise DataError(f"network {net.name!r}: the Jacobian J_[{J.input.name}] {J.output.name} is not finite (NaN/Inf)")
    with atomic_file(out) as fh:
        sp.save_npz(fh, M)
    print(f"wrote J_[{J.input.name}] {J.output.name} ∈ R^{M.shape[0]}x{M.shape[1]} ({M.nnz} nonzeros) to {out}")
    return EXIT_OK


def _cmd_latex(args) -> int:
    from .render import derivation

    out = _output(args.output)
    spec, net, params, X, Y = _setup(args)
    net.require_renderable("latex")  # a composite layer without LaTeX facts: one clear line, exit 2
    tex = derivation.derivation_document(net, params, X, Y)
    with atomic_file(out, "w", encoding="utf-8") as fh:
        fh.write(tex)
    print(f"wrote {out}")
    if args.pdf:
        pdf = derivation.compile_pdf(out)
        print(f"wrote {pdf}")
    return EXIT_OK


def _cmd_errata(args) -> int:
    from .documents import errata

    outs = [(fmt, _output(path)) for fmt, path in (("markdown", args.markdown), ("latex", args.latex)) if path]
    if len(outs) == 2 and os.path.abspath(outs[0][1]) == os.path.abspath(outs[1][1]):
        raise DataError(f"--markdown and --latex name the same file {str(outs[0][1])!r}")
    rep = errata.build_errata()
    print(rep.to_text())
    for fmt, out in outs:
        text = rep.to_markdown() if fmt == "markdown" else rep.to_latex()
        with atomic_file(out, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote {out}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jacobian-bp", description="Backpropagation as an explicit product of Jacobians.",
                epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name, help_):
        return sub.add_parser(name, help=help_, epilog=EXIT_CODES_HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    def with_spec(sp_, data=True):
        sp_.add_argument("spec", help="built-in example name or JSON spec file")
        sp_.add_argument("--params", help=".npz of parameters keyed W1, b1, … (convention layout)")
        sp_.add_argument("--param-seed", type=_int_at_least(0, "--param-seed"), default=None,
                         help="seed (>= 0) for generated parameters")
        if data:
            sp_.add_argument("--data", help=".npz with keys x and y")
            sp_.add_argument("--seed", type=_int_at_least(0, "--seed"), default=None,
                             help="seed (>= 0) for generated data")
            sp_.add_argument("--batch", type=_int_at_least(1, "--batch"), default=None,
                             help="batch size (>= 1) of generated data")

    add("examples", "list built-in examples").set_defaults(func=_cmd_examples)
    s = add("show", "network, θ layout and Jacobian blocks")
    with_spec(s)
    s.set_defaults(func=_cmd_show)
    s = add("verify", "verification report")
    with_spec(s)
    s.add_argument("--no-torch", action="store_true", help="skip the PyTorch oracle")
    s.add_argument("--fd-coords", type=_int_at_least(1, "--fd-coords"), default=60,
                   help="finite-difference coordinates per block (>= 1, default 60)")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(func=_cmd_verify)
    s = add("gradient", "write ∇θℓ to .npz")
    with_spec(s)
    s.add_argument("-o", "--output", required=True, help="output file (written as given; no suffix is added)")
    s.add_argument("--method", choices=["chain", "operator"], default="chain")
    s.set_defaults(func=_cmd_gradient)
    s = add("jacobian", "write J_θ z[L] (or J_x z[L]) as sparse .npz")
    with_spec(s)
    s.add_argument("-o", "--output", required=True, help="output file (written as given; no suffix is added)")
    s.add_argument("--wrt", choices=["theta", "input"], default="theta")
    s.set_defaults(func=_cmd_jacobian)
    s = add("latex", "write a standalone LaTeX derivation")
    with_spec(s)
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--pdf", action="store_true", help="also compile with pdflatex")
    s.set_defaults(func=_cmd_latex)
    s = add("errata", "errata report of the four source documents")
    s.add_argument("--markdown", help="write Markdown here")
    s.add_argument("--latex", help="write LaTeX here")
    s.set_defaults(func=_cmd_errata)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring).

    Usage errors print argparse's usage and error lines and return 2 (``--help`` returns 0);
    every other error prints one line on stderr.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return args.func(args)
    except KeyboardInterrupt:
        print("jacobian-bp: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (JacobianBPError, MemoryError) as exc:
        print(f"jacobian-bp: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # reading or writing a file failed (disk full, permissions, …)
        where = f" {exc.filename!r}" if getattr(exc, "filename", None) else ""
        print(f"jacobian-bp: error: file input/output failed{where}: {_one_line(exc.strerror or exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback on request
        if os.environ.get("JACOBIAN_BP_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        print(f"jacobian-bp: internal error: {type(exc).__name__}: {_one_line(exc)} (please report)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
