"""Shared helpers for the test suite."""
from __future__ import annotations

import numpy as np

import jacobian_bp as jb


def make_data(net: jb.Network, N: int, seed: int = 0):
    """Inputs/targets for ``net`` in its convention's layout (single sample when N == 1)."""
    from jacobian_bp.spec import generate_data

    X, Y = generate_data(net, N, seed)
    if net.loss.kind == "bce":  # soft targets exercise the general BCE formula
        rng = np.random.default_rng(seed + 1)
        Y = rng.uniform(0.05, 0.95, size=np.shape(Y))
    return X, Y


def fd_gradient(net: jb.Network, X, Y, params, h: float = 1e-6) -> np.ndarray:
    """Central differences of the reduced loss w.r.t. θ (the convention's order), float64."""
    theta = net.pack(params)
    g = np.zeros_like(theta)
    for k in range(theta.size):
        t = theta.copy()
        t[k] += h
        fp = net.loss_value(X, Y, net.unpack(t))
        t[k] -= 2 * h
        fm = net.loss_value(X, Y, net.unpack(t))
        g[k] = (fp - fm) / (2 * h)
    return g


def rel_err(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


NOTEBOOKS = __import__("pathlib").Path(__file__).resolve().parents[1] / "notebooks"


def execute_notebook(name: str, timeout: int = 600):
    """Read ``notebooks/NAME``, check it is stored without outputs, execute it headless
    (nbclient, kernel python3, cwd = notebooks/) and return the executed notebook."""
    import pytest

    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name} has no code cells"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), \
        f"commit {name} without outputs"
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def notebook_outputs(nb, kind: str = "stream") -> list[str]:
    """Texts of the executed notebook's outputs: ``"stream"`` for printed text, or a MIME type."""
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if kind == "stream":
                if o.get("output_type") == "stream":
                    out.append(o.get("text", ""))
            elif kind in o.get("data", {}):
                out.append(o["data"][kind])
    return out


def fd_jacobian(f, x, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences (float64) of a vector function of the array ``x`` (any shape):
    column ``t`` is the derivative along the ``t``-th entry of ``x`` in row-major order."""
    x = np.asarray(x, dtype=np.float64)
    cols = []
    for t in range(x.size):
        e = np.zeros(x.size)
        e[t] = eps
        e = e.reshape(x.shape)
        cols.append((np.ravel(f(x + e)) - np.ravel(f(x - e))) / (2 * eps))
    return np.stack(cols, axis=1)


def dense_net(preset="pytorch", act=jb.Tanh, last=jb.Softmax, loss="cross_entropy", widths=(5, 4), n_in=3, n_out=3):
    """A dense network ``n_in -> widths... -> n_out`` with activation ``act`` and output ``last``."""
    layers = []
    for w in widths:
        layers += [jb.Dense(w), act()]
    layers += [jb.Dense(n_out)] + ([last()] if last else [])
    return jb.Network(layers, loss, n_in, preset)


def _have_pdflatex() -> bool:
    import shutil

    return shutil.which("pdflatex") is not None


def needs_pdflatex(test):
    """Skip a test when pdflatex is not installed (CI installs texlive-latex-base)."""
    import pytest

    return pytest.mark.skipif(not _have_pdflatex(), reason="pdflatex is not installed (CI installs texlive-latex-base)")(test)


def example(name):
    """``(network, params, x, y)`` of a built-in example spec."""
    from jacobian_bp.spec import load_spec

    sp = load_spec(name)
    x, y = sp.data()
    return sp.network, sp.network.init_params(0), x, y


#: the first lines of a ``python -c`` program that makes ``dask``, ``distributed`` and ``zarr``
#: unimportable (an import finder that refuses them): the package as installed without the ``[dask]`` extra
BLOCK_DASK_IMPORTS = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('dask', 'distributed', 'zarr'):\n"
    "            raise ImportError('blocked ' + name)\n"
    "sys.meta_path.insert(0, Block())\n"
)


@__import__("contextlib").contextmanager
def local_dask_cluster():
    """A dask ``LocalCluster`` of two one-thread worker processes (1 GiB each) and a ``Client`` on it, for
    module-scoped fixtures: ``with local_dask_cluster() as (lc, cl): yield cl``; both are closed afterwards."""
    from distributed import Client, LocalCluster

    lc = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB",
                      dashboard_address=None, silence_logs=40)
    cl = Client(lc)
    try:
        cl.wait_for_workers(2, timeout=60)
        yield lc, cl
    finally:
        cl.close()
        lc.close()
