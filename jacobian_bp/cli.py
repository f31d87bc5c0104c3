"""The ``jacobian-bp`` command line.

::

    jacobian-bp examples                       list the built-in example specs
    jacobian-bp show SPEC                      the network, its θ layout and Jacobian block shapes
    jacobian-bp verify SPEC                    verification report (exit 1 on FAIL)
    jacobian-bp gradient SPEC -o grad.npz      ∇θℓ keyed by parameter name (+ "theta")
    jacobian-bp jacobian SPEC -o J.npz         J_θ z[L] (or J_x z[L] with --wrt input) as sparse .npz
    jacobian-bp latex SPEC -o file.tex [--pdf] a standalone derivation document
    jacobian-bp errata [--markdown F] [--latex F]   the errata report of the four documents
    jacobian-bp schema [-o spec.schema.json]   the JSON Schema (draft 2020-12) of the spec format
    jacobian-bp check 'LATEX' [--setting S]    judge a derivative formula (truth computed; exit 1 if wrong)
    jacobian-bp targets                        the network quantities a Claim can name
    jacobian-bp ntk SPEC --data D.npz --chunks 256 -o ntk.zarr [--scheduler ADDR | --workers N]
    jacobian-bp per-sample SPEC --data D.npz --chunks 256 -o grads.zarr|grads.npz [--scheduler ADDR]

SPEC is a built-in example name (``damadi-1layer``, ``damadi-2layer``, ``lenet-300-100``, …)
or a JSON file (see :mod:`jacobian_bp.spec`).  Parameters come from ``--params FILE.npz``
(keys ``W1``, ``b1``, … in the convention's layout) or from ``--param-seed``; data from
``--data FILE.npz`` (keys ``x`` and ``y`` in the convention's layout -- for ``ntk`` and ``per-sample``
also ``X`` and ``Y``; read with ``allow_pickle=False``) or from ``--seed`` and ``--batch``.

``jacobian`` writes a SciPy sparse ``.npz`` (``scipy.sparse.load_npz`` reads it) with two more
arrays: ``rows`` and ``cols``, the name of every row and column -- ``z2[0]`` (entry 0 of
z[2]), ``W1[0,3]`` (entry (0, 3) of the parameter ``W1`` as stored in the
``--params``/``gradient`` files), ``b1[2]``, ``x[5]``; in a batch ``sample4.z2[0]``.

``ntk`` and ``per-sample`` run on dask.distributed (the optional extra ``pip install
"jacobian_bp[dask]"``): on the scheduler at ``--scheduler`` (``tcp://host:8786``), else on a
``LocalCluster`` of ``--workers`` processes started for the run (``--workers 0``: dask's local
threaded scheduler, no cluster), in tasks of ``--chunks`` samples (:mod:`jacobian_bp.uses.distributed`).
A ``.zarr`` output is a directory written chunk by chunk (results larger than memory); an existing
one is replaced only with ``--overwrite``.

Progress bars (tqdm, the extra ``[progress]``) appear on long work when stderr is a terminal;
``--quiet`` (or ``JACOBIAN_BP_QUIET=1``) turns them off.

Every output file is written atomically (a temporary file in the same folder, renamed over
the target on success): the path given is exactly the path written, and a failed run leaves
no partial file.  Errors are one line ``jacobian-bp: error: …`` on stderr, never a traceback.

Exit codes
----------
0
    success (``verify``: every check passed; ``check``: the formula holds)
1
    ``verify``: a check failed (the report says which); ``check``: the formula is wrong or ill-typed
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
import io
import json
import os
import sys
import traceback
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .backend.atomic import atomic_file, check_writable
from .backend.progress import progress, set_quiet, show_progress
from .errors import DataError, JacobianBPError, UnsupportedInputError

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


def _load_data(path: str, need_y: bool = True, upper: bool = False) -> tuple[np.ndarray, "np.ndarray | None"]:
    """Inputs and targets from an .npz: keys ``x`` and ``y`` (``y`` optional when not ``need_y``);
    with ``upper`` (the dask commands) also ``X`` and ``Y``."""
    d = _load_npz(path, "data")
    xk, yk = (("x", "X"), ("y", "Y")) if upper else (("x",), ("y",))
    xs, ys = [k for k in xk if k in d], [k for k in yk if k in d]
    alt = " (or 'X' and 'Y')" if upper else ""
    want = (f"the keys 'x' and 'y'{alt}" if need_y else
            f"the key 'x'{' (or X)' if upper else ''}, optionally 'y'{' (or Y)' if upper else ''}")
    if set(d) - set(xk + yk) or len(xs) != 1 or len(ys) > 1 or (need_y and not ys):
        raise DataError(f"data file {path!r}: expected exactly {want}, found {sorted(d)}")
    return d[xs[0]], (d[ys[0]] if ys else None)


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
        X, Y = _load_data(args.data, need_y=getattr(args, "need_y", True), upper=getattr(args, "upper_keys", False))
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

    width = max(len(name) for name in EXAMPLES) + 2
    for name, raw in EXAMPLES.items():
        try:
            net = load_spec(name).network
            print(f"{name:<{width}} |θ| = {net.n_params:<8} {raw.get('description', '')}")
        except JacobianBPError as exc:  # pragma: no cover - e.g. an optional layer family missing
            print(f"{name:<{width}} unavailable: {exc}")
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
    n = 1 if single else M.shape[0] // net.n_out
    rows = _batch(_index_labels(f"z{net.L}", tuple(net.output_shape)), n, single)
    cols = theta_labels(net) if args.wrt == "theta" else _batch(_index_labels("x", tuple(net.input_shape)), n, single)
    if (len(rows), len(cols)) != M.shape:  # pragma: no cover - a layout this labelling does not know
        raise UnsupportedInputError(f"network {net.name!r}: cannot label a {M.shape[0]}x{M.shape[1]} Jacobian "
                                    f"({len(rows)} row and {len(cols)} column names)")
    buf = io.BytesIO()
    sp.save_npz(buf, M)  # scipy's own keys, so that scipy.sparse.load_npz reads the file
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    with atomic_file(out) as fh:
        np.savez(fh, **arrays, rows=np.array(rows), cols=np.array(cols))
    print(f"wrote J_[{J.input.name}] {J.output.name} ∈ R^{M.shape[0]}x{M.shape[1]} ({M.nnz} nonzeros, "
          f"rows and cols named) to {out}")
    return EXIT_OK


def _index_labels(base: str, shape: tuple, order: str = "C") -> list[str]:
    """``base[i]`` / ``base[i,j,…]`` for every entry of an array of ``shape`` flattened in ``order``."""
    size = int(np.prod(shape)) if shape else 1
    if not shape:
        return [base]
    idx = np.unravel_index(np.arange(size), shape, order="F" if order == "F" else "C")
    return [f"{base}[{','.join(str(int(a[k])) for a in idx)}]" for k in range(size)]


def theta_labels(net) -> list[str]:
    """The name of every coordinate of θ in the convention's order: ``W1[i,j]`` is entry ``(i, j)`` of the
    parameter ``W1`` in the user's layout (the ``--params`` / ``gradient`` arrays), ``b1[i]``, ``K1[c,d,u,v]``.

    From the network's θ layout (:attr:`Network.entries`: each parameter's offset, user shape and
    vec order -- columns stacked for ``F``)."""
    out: list[str] = []
    for e in net.entries:
        out += _index_labels(e.name, tuple(e.space.shape), e.space.order)
    return out


def _batch(labels: list[str], n: int, single: bool) -> list[str]:
    """One sample's labels, or ``sample{i}.label`` for each of ``n`` samples (sample-major, as the batch Jacobians)."""
    return labels if single else [f"sample{i}.{t}" for i in range(n) for t in labels]


def _cmd_latex(args) -> int:
    from .render import derivation

    out = _output(args.output)
    spec, net, params, X, Y = _setup(args)
    if getattr(net, "couples_samples", False):  # batch norm in training mode: the batch derivation
        from .render.batch_derivation import batch_derivation_document

        tex = batch_derivation_document(net, params, X, Y, notation=args.notation)
    else:
        net.require_renderable("latex")  # a composite layer without LaTeX facts: one clear line, exit 2
        tex = derivation.derivation_document(net, params, X, Y, notation=args.notation)
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
    from .documents.catalogue import catalogue, result

    for e in progress(catalogue(), desc="errata"):
        result(e)  # computed once per process: build_errata below reuses the verdicts
    rep = errata.build_errata()
    print(rep.to_text())
    for fmt, out in outs:
        text = rep.to_markdown() if fmt == "markdown" else rep.to_latex()
        with atomic_file(out, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote {out}")
    return EXIT_OK


def _cmd_schema(args) -> int:
    from .spec import spec_schema

    text = json.dumps(spec_schema(), indent=2, ensure_ascii=False) + "\n"
    if args.output:
        out = _output(args.output)
        with atomic_file(out, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote the JSON Schema of the spec format to {out}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


# ---------------------------------------------------------------------------- on dask.distributed
DASK_HINT = 'pip install "jacobian_bp[dask]"'


def _distributed():
    """:mod:`jacobian_bp.uses.distributed`, or a one-line error naming the extra to install."""
    try:
        from .uses import distributed
        import distributed as _  # noqa: F401 - the cluster runtime, not only dask.array
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "dask"
        raise UnsupportedInputError(f"this command needs dask.distributed ({missing} is not installed): "
                                    f"{DASK_HINT}") from None
    return distributed


def _is_zarr_store(path: Path) -> bool:
    return path.is_dir() and any((path / m).exists() for m in (".zarray", ".zgroup", "zarr.json"))


def _zarr_target(path: str, overwrite: bool) -> Path:
    """Check a ``.zarr`` output before any work: its folder exists; an existing path is replaced only
    when it is a zarr store and ``--overwrite`` was given (never an arbitrary folder or file)."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise DataError(f"output folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise DataError(f"output folder {str(parent)!r} is not writable")
    if os.path.lexists(p):
        if not _is_zarr_store(p):
            raise DataError(f"output {path!r} exists and is not a zarr store; choose another path")
        if not overwrite:
            raise DataError(f"output {path!r} exists; pass --overwrite to replace it")
    return p


class _Cluster:
    """The dask client of one run: the scheduler at ``address``, a LocalCluster of ``workers`` processes,
    or none (``workers == 0``: dask's local threaded scheduler).  Closed on exit."""

    def __init__(self, jd, args):
        self.jd, self.address, self.workers = jd, args.scheduler, args.workers
        self.budget, self.timeout, self.client = args.worker_budget, args.timeout, None

    def __enter__(self):
        if self.address is None and self.workers == 0:
            return None
        kwargs = {"timeout": self.timeout}
        if self.address is None:
            kwargs.update(dashboard_address=None, silence_logs=40)
        try:
            self.client = self.jd.client(self.address, n_workers=max(self.workers, 1), worker_budget=self.budget,
                                         **kwargs)
        except (OSError, TimeoutError) as exc:
            where = f"the scheduler at {self.address!r}" if self.address else "a local cluster"
            raise DataError(f"cannot connect to {where}: {_one_line(exc)}") from None
        return self.client

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        return False


def _dask_setup(args, need_y: bool):
    args.need_y, args.upper_keys = need_y, True  # the data file may also name its arrays X and Y
    spec, net, params, X, Y = _setup(args)
    return net, params, X, Y


def _layout_attrs(net) -> dict:
    """What the columns of a θ-indexed array are: each parameter's name, offset, size and user shape."""
    return {"network": net.name, "convention": net.convention.name,
            "parameters": [{"name": e.name, "offset": e.offset, "size": e.size, "shape": list(e.space.shape),
                            "vec_order": "columns stacked" if e.space.order == "F" else "rows stacked"}
                           for e in net.entries]}


def _annotate_zarr(path: Path, attrs: dict) -> None:
    """Record what the axes of a written zarr array mean (its ``.attrs``)."""
    import zarr

    zarr.open(str(path), mode="r+").attrs.update(attrs)


def _n_samples(net, X) -> int:
    return 1 if np.ndim(X) == len(net.input_shape) else int(np.shape(X)[0 if net.convention.batch_axis == "first" else -1])


def _cmd_ntk(args) -> int:
    jd = _distributed()
    if Path(args.output).suffix.lower() != ".zarr":
        raise DataError(f"ntk: the output is a zarr store; name it *.zarr, received {args.output!r}")
    out = _zarr_target(args.output, args.overwrite)
    net, params, X, _ = _dask_setup(args, need_y=False)
    with _Cluster(jd, args):
        K = jd.empirical_ntk(net, X, params, chunks=args.chunks)
        jd.to_zarr(K, out, progress=show_progress(), overwrite=args.overwrite)
    N = _n_samples(net, X)
    _annotate_zarr(out, {"quantity": "empirical NTK J_θ Z[L] (J_θ Z[L])ᵀ", "network": net.name,
                         "rows": f"sample-major: row i*{net.n_out} + k is output k of sample i",
                         "columns": "as the rows"})
    print(f"wrote the empirical NTK of {net.name} ({N} samples x {net.n_out} outputs: {K.shape[0]}x{K.shape[1]}, "
          f"rows sample-major) to {out}")
    return EXIT_OK


def _cmd_per_sample(args) -> int:
    jd = _distributed()
    suffix = Path(args.output).suffix.lower()
    if suffix not in (".zarr", ".npz"):
        raise DataError(f"per-sample: the output is a .zarr store or an .npz file, received {args.output!r}")
    out = _zarr_target(args.output, args.overwrite) if suffix == ".zarr" else _output(args.output)
    net, params, X, Y = _dask_setup(args, need_y=True)
    with _Cluster(jd, args):
        G = jd.per_sample_gradients(net, X, Y, params, chunks=args.chunks)
        if suffix == ".zarr":
            jd.to_zarr(G, out, progress=show_progress(), overwrite=args.overwrite)
        else:
            g = jd.compute(G, progress=show_progress())
    if suffix == ".zarr":
        _annotate_zarr(out, {"quantity": "per-sample gradients of the unreduced losses", "rows": "samples",
                             "columns": "θ in the convention's order", **_layout_attrs(net)})
    else:
        if not np.all(np.isfinite(g)):
            raise DataError(f"network {net.name!r}: a per-sample gradient is not finite (NaN/Inf)")
        with atomic_file(out) as fh:
            np.savez(fh, gradients=g, cols=np.array(theta_labels(net)))
    print(f"wrote the per-sample gradients of {net.name} ({G.shape[0]} samples x {G.shape[1]} parameters, "
          f"columns in θ order) to {out}")
    return EXIT_OK


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jacobian_bp")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree that is not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``jacobian-bp`` (every option has its help text)."""
    from .render.notation import NOTATIONS

    p = _Parser(prog="jacobian-bp", description="Backpropagation as an explicit product of Jacobians.",
                epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"jacobian-bp {_version()}",
                   help="print the version of jacobian_bp and exit")
    p.add_argument("-q", "--quiet", action="store_true", default=False,
                   help="no progress bars (they appear only when stderr is a terminal)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    common = _Parser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars (they appear only when stderr is a terminal)")

    def add(name, help_):
        return sub.add_parser(name, help=help_, description=help_, epilog=EXIT_CODES_HELP, parents=[common],
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    def with_spec(sp_, data=True, data_help=".npz with keys x and y, in the convention's layout"):
        sp_.add_argument("spec", help="built-in example name (see 'jacobian-bp examples') or JSON spec file "
                                      "(see 'jacobian-bp schema')")
        sp_.add_argument("--params", metavar="FILE.npz",
                         help=".npz of parameters keyed W1, b1, … (convention layout); default: generated")
        sp_.add_argument("--param-seed", type=_int_at_least(0, "--param-seed"), default=None, metavar="SEED",
                         help="seed (>= 0) for generated parameters (default: the spec's)")
        if data:
            sp_.add_argument("--data", metavar="FILE.npz", help=data_help + "; default: generated")
            sp_.add_argument("--seed", type=_int_at_least(0, "--seed"), default=None,
                             help="seed (>= 0) for generated data (default: the spec's)")
            sp_.add_argument("--batch", type=_int_at_least(1, "--batch"), default=None,
                             help="batch size (>= 1) of generated data (default: the spec's)")

    def output(sp_, what):
        sp_.add_argument("-o", "--output", required=True, metavar="FILE",
                         help=f"{what} (written as given, atomically; no suffix is added)")

    add("examples", "list the built-in example specs").set_defaults(func=_cmd_examples)
    s = add("show", "print the network, its θ layout and the Jacobian blocks")
    with_spec(s)
    s.set_defaults(func=_cmd_show)
    s = add("verify", "verification report: closed forms, finite differences, PyTorch (exit 1 on FAIL)")
    with_spec(s)
    s.add_argument("--no-torch", action="store_true", help="skip the PyTorch oracle")
    s.add_argument("--fd-coords", type=_int_at_least(1, "--fd-coords"), default=60, metavar="N",
                   help="finite-difference coordinates per block (>= 1, default 60)")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(func=_cmd_verify)
    s = add("gradient", "write ∇θℓ to .npz (keyed by parameter name, and 'theta')")
    with_spec(s)
    output(s, "output .npz")
    s.add_argument("--method", choices=["chain", "operator"], default="chain",
                   help="chain: the product of explicit Jacobians (Damadi Alg. 1); operator: structured "
                        "vector-Jacobian products (default chain)")
    s.set_defaults(func=_cmd_gradient)
    s = add("jacobian", "write J_θ z[L] (or J_x z[L]) as a sparse .npz with row and column names")
    with_spec(s)
    output(s, "output .npz (scipy.sparse.load_npz reads it; arrays 'rows' and 'cols' name the entries)")
    s.add_argument("--wrt", choices=["theta", "input"], default="theta",
                   help="differentiate with respect to the parameters θ (default) or the input x")
    s.set_defaults(func=_cmd_jacobian)
    s = add("latex", "write a standalone LaTeX derivation")
    with_spec(s)
    output(s, "output .tex")
    s.add_argument("--pdf", action="store_true", help="also compile with pdflatex")
    s.add_argument("--notation", choices=list(NOTATIONS), default=None,
                   help="whose notation the derivation is written in (default: the spec's convention)")
    s.set_defaults(func=_cmd_latex)
    s = add("errata", "errata report of the four source documents")
    s.add_argument("--markdown", metavar="FILE", help="also write the report as Markdown here")
    s.add_argument("--latex", metavar="FILE", help="also write the report as LaTeX here")
    s.set_defaults(func=_cmd_errata)
    s = add("schema", "print the JSON Schema (draft 2020-12) of the spec format")
    s.add_argument("-o", "--output", metavar="FILE", help="write it to this file instead of printing it")
    s.set_defaults(func=_cmd_schema)

    def with_dask(sp_, what):
        sp_.add_argument("--chunks", type=_int_at_least(1, "--chunks"), default=256, metavar="N",
                         help="samples per task (>= 1, default 256); one task's memory grows with it")
        where = sp_.add_mutually_exclusive_group()
        where.add_argument("--scheduler", metavar="ADDRESS", default=None,
                           help="address of a running dask scheduler (tcp://host:8786); default: a LocalCluster")
        where.add_argument("--workers", type=_int_at_least(0, "--workers"), default=2, metavar="N",
                           help="worker processes of the LocalCluster started for this run (default 2; "
                                "0: dask's local threaded scheduler, no cluster)")
        sp_.add_argument("--timeout", type=_int_at_least(1, "--timeout"), default=60, metavar="SECONDS",
                         help="give up connecting to the scheduler (or starting the cluster) after this long "
                              "(default 60)")
        sp_.add_argument("--worker-budget", type=_int_at_least(1, "--worker-budget"), default=None,
                         metavar="BYTES", help="jacobian_bp's memory budget in every worker (default: theirs)")
        sp_.add_argument("--overwrite", action="store_true", help="replace an existing .zarr output store")
        output(sp_, what)

    s = add("ntk", "the empirical NTK J Jᵀ of a data set, blockwise on dask.distributed, to a .zarr store")
    with_spec(s, data_help=".npz with key x (or X), a batch in the convention's layout")
    with_dask(s, "output .zarr store (a directory)")
    s.set_defaults(func=_cmd_ntk)
    s = add("per-sample", "per-sample gradients (N x |θ|) of a data set on dask.distributed, to .zarr or .npz")
    with_spec(s, data_help=".npz with keys x and y (or X and Y), a batch in the convention's layout")
    with_dask(s, "output .zarr store or .npz file (keys 'gradients' and 'cols')")
    s.set_defaults(func=_cmd_per_sample)
    s = add("check", "judge a derivative formula given in LaTeX: the truth is computed by the project "
                     "(exit 0: it holds, 1: it does not); 'jacobian-bp check --help' lists its options")
    s.add_argument("rest", nargs=argparse.REMAINDER, metavar="'LATEX' [OPTIONS]",
                   help="the formula, e.g. '\\frac{\\partial}{\\partial X}\\operatorname{tr}(AXB) = A^\\top B^\\top', "
                        "then --setting PRESET, --layout, --vec, --shape X=m,n, --define NAME=LATEX, --stride, ...")
    s.set_defaults(func=_cmd_check)
    add("targets", "list the network quantities (targets) a Claim can name, with meaning and shape"
        ).set_defaults(func=_cmd_targets)
    return p


def _cmd_check(args) -> int:
    """``check``: :func:`jacobian_bp.claims.judge.main_check` on the rest of the command line."""
    from .claims.judge import main_check

    try:
        return main_check(list(args.rest))
    except ImportError as exc:  # the judge's LaTeX reader is the optional extra "judge" (lark)
        print(f"jacobian-bp: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE


def _cmd_targets(args) -> int:
    from .claims import describe_targets

    print(describe_targets())
    return EXIT_OK


def _check_argv(argv: list[str]) -> list[str] | None:
    """The arguments after ``check`` when the command is ``check`` (its options are its own), else None."""
    i = 0
    while i < len(argv) and argv[i] in ("-q", "--quiet"):
        i += 1
    return argv[i + 1:] if i < len(argv) and argv[i] == "check" else None


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring).

    Usage errors print argparse's usage and error lines and return 2 (``--help`` returns 0);
    every other error prints one line on stderr.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = _check_argv(argv)
    if rest is not None:  # `check` parses its own options (the formula may start with anything)
        args = argparse.Namespace(func=_cmd_check, rest=rest, quiet=len(argv) - len(rest) > 1)
    else:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
            return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)
    quiet_before = set_quiet(bool(getattr(args, "quiet", False)))
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
    finally:
        set_quiet(quiet_before)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
