"""`jacobian-bp ntk` and `jacobian-bp per-sample` (issue #16 item 2) on a LocalCluster of two worker
processes started here, used as a user would (data and spec files on disk, zarr/npz outputs).

Oracles: the single-machine functions of the package (the same chunks give the same bits: rel <= 1e-14)
and, independently of the distributed code, J Jᵀ formed here from the dense batch Jacobian and the
per-sample gradients from ``network.gradient`` of each sample alone.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import BLOCK_DASK_IMPORTS, local_dask_cluster

from jacobian_bp.cli import main
from jacobian_bp.engine import per_sample as ps
from jacobian_bp.spec import generate_data, load_spec
from jacobian_bp.uses import curvature as cv

HAVE_DASK = all(importlib.util.find_spec(m) is not None for m in ("dask", "distributed", "zarr"))
pytestmark = pytest.mark.skipif(not HAVE_DASK, reason="dask, distributed and zarr are the optional extra [dask]")

#: a batch-last network (Park's convention: X is n x N) with a ReLU, and a batch-first one (Damadi's)
SPECS = {
    "park": {"name": "park-mlp", "input": 5, "convention": "park", "loss": "cross_entropy",
             "layers": [{"type": "dense", "out_features": 6}, {"type": "relu"},
                        {"type": "dense", "out_features": 3}, {"type": "softmax"}]},
    "damadi": {"name": "damadi-mlp", "input": 4, "convention": "damadi", "loss": {"type": "mse", "scale": 0.5},
               "layers": [{"type": "dense", "out_features": 5}, {"type": "tanh"},
                          {"type": "dense", "out_features": 2}]},
}
N = 22  # three chunks of 8: two full, one ragged


def rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.fixture(scope="module")
def scheduler():
    with local_dask_cluster() as (lc, cl):
        yield lc.scheduler_address


@pytest.fixture(scope="module", params=sorted(SPECS))
def problem(request, tmp_path_factory):
    """A spec file, parameters and a data file on disk (keys X and Y), and the loaded objects."""
    d = tmp_path_factory.mktemp(request.param)
    spec_path = d / "net.json"
    spec_path.write_text(json.dumps(SPECS[request.param]))
    net = load_spec(str(spec_path)).network
    X, Y = generate_data(net, N, seed=7)
    p = net.init_params(3)
    np.savez(d / "data.npz", X=X, Y=Y)
    np.savez(d / "params.npz", **p)
    return d, str(spec_path), net, X, Y, p


def _samples(net, X):
    return [X[i] if net.convention.batch_axis == "first" else X[..., i] for i in range(N)]


def test_ntk_on_the_cluster_equals_the_single_machine_function(scheduler, problem, capsys):
    import zarr

    d, spec, net, X, Y, p = problem
    out = d / "ntk.zarr"
    rc = main(["ntk", spec, "--data", str(d / "data.npz"), "--params", str(d / "params.npz"), "--chunks", "8",
               "-o", str(out), "--scheduler", scheduler, "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert "wrote the empirical NTK" in capsys.readouterr().out
    K = zarr.open(str(out), mode="r")[...]
    assert K.shape == (N * net.n_out, N * net.n_out)
    # the same chunks give the same numbers: the single-machine function on each diagonal chunk
    for s in range(0, N, 8):
        idx = slice(s * net.n_out, min(s + 8, N) * net.n_out)
        Xc = X[s:s + 8] if net.convention.batch_axis == "first" else X[:, s:s + 8]
        assert rel(K[idx, idx], cv.empirical_ntk(net, Xc, p).to_dense()) <= 1e-14
    assert rel(K, cv.empirical_ntk(net, X, p).to_dense()) <= 1e-14
    # independent oracle: J Jᵀ of the dense per-sample Jacobians stacked sample-major
    J = np.vstack([net.jacobian_theta(x, p).to_dense() for x in _samples(net, X)])
    assert rel(K, J @ J.T) <= 1e-12
    np.testing.assert_array_equal(K, K.T)


def test_per_sample_on_the_cluster_to_zarr_and_npz(scheduler, problem, capsys):
    import zarr

    d, spec, net, X, Y, p = problem
    G0 = ps.per_sample_gradients(net, X, Y, p)
    for name in ("g.zarr", "g.npz"):
        rc = main(["per-sample", spec, "--data", str(d / "data.npz"), "--params", str(d / "params.npz"),
                   "--chunks", "8", "-o", str(d / name), "--scheduler", scheduler])
        assert rc == 0, capsys.readouterr().err
        if name.endswith(".zarr"):
            z = zarr.open(str(d / name), mode="r")
            G = z[...]
            assert z.attrs["parameters"][0]["name"] == net.entries[0].name
        else:
            with np.load(d / name, allow_pickle=False) as f:
                G, cols = f["gradients"], f["cols"]
            assert len(cols) == net.n_params and cols[0].startswith(net.entries[0].name + "[")
        assert G.shape == (N, net.n_params)
        assert rel(G, G0) <= 1e-14
    # independent oracle: the gradient of each sample's own loss (one sample: the reduction factor is 1)
    ys = [Y[i] if net.convention.batch_axis == "first" else Y[:, i] for i in range(N)]
    G1 = np.stack([net.gradient(x, y, p).vector for x, y in zip(_samples(net, X), ys)])
    assert rel(G, G1) <= 1e-12


def test_local_threaded_scheduler_gives_the_same_bits(problem, capsys):
    """--workers 0: no cluster, dask's local scheduler; the chunks are the same, so are the numbers."""
    import zarr

    d, spec, net, X, Y, p = problem
    out = d / "ntk0.zarr"
    np.savez(d / "xonly.npz", x=X)  # the NTK needs no targets; lower-case keys work too
    rc = main(["ntk", spec, "--data", str(d / "xonly.npz"), "--params", str(d / "params.npz"), "--chunks", "8",
               "-o", str(out), "--workers", "0"])
    assert rc == 0, capsys.readouterr().err
    assert rel(zarr.open(str(out), mode="r")[...], cv.empirical_ntk(net, X, p).to_dense()) <= 1e-14
    # an existing store is replaced only with --overwrite
    rc = main(["ntk", spec, "--data", str(d / "data.npz"), "-o", str(out), "--workers", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "exists; pass --overwrite" in err and len(err.strip().splitlines()) == 1
    assert main(["ntk", spec, "--data", str(d / "data.npz"), "-o", str(out), "--workers", "0",
                 "--chunks", "5", "--overwrite"]) == 0
    K = zarr.open(str(out), mode="r")[...]
    assert rel(K, cv.empirical_ntk(net, X, net.init_params(0)).to_dense()) <= 1e-14  # spec's parameter seed 0


def _err(argv, capsys) -> tuple[int, str]:
    rc = main(argv)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return rc, err


def test_bad_data_files_and_outputs_are_one_line_errors(tmp_path, capsys):
    spec = "damadi-2layer"
    net = load_spec(spec).network
    X, Y = generate_data(net, 6, seed=0)
    np.savez(tmp_path / "noy.npz", X=X)
    np.savez(tmp_path / "wrongkey.npz", inputs=X)
    np.savez(tmp_path / "obj.npz", X=np.array([1, "a", None], dtype=object))
    np.savez(tmp_path / "shape.npz", X=np.ones((6, 5)), Y=Y)
    np.savez(tmp_path / "both.npz", x=X, X=X, y=Y)
    (tmp_path / "text.npz").write_text("not an archive")
    (tmp_path / "folder.zarr").mkdir()
    (tmp_path / "folder.zarr" / "keep.txt").write_text("user data")
    t = str(tmp_path)
    cases = [
        (["per-sample", spec, "--data", f"{t}/noy.npz", "-o", f"{t}/g.npz"], "expected exactly the keys 'x' and 'y'"),
        (["ntk", spec, "--data", f"{t}/wrongkey.npz", "-o", f"{t}/k.zarr"], "found ['inputs']"),
        (["ntk", spec, "--data", f"{t}/obj.npz", "-o", f"{t}/k.zarr"], "allow_pickle"),
        (["ntk", spec, "--data", f"{t}/shape.npz", "-o", f"{t}/k.zarr"], "received (6, 5)"),
        (["ntk", spec, "--data", f"{t}/both.npz", "-o", f"{t}/k.zarr"], "expected exactly"),
        (["ntk", spec, "--data", f"{t}/text.npz", "-o", f"{t}/k.zarr"], "not a readable .npz"),
        (["ntk", spec, "--data", f"{t}/missing.npz", "-o", f"{t}/k.zarr"], "does not exist"),
        (["ntk", spec, "-o", f"{t}/folder.zarr", "--overwrite"], "is not a zarr store"),
        (["ntk", spec, "-o", f"{t}/k.npz"], "name it *.zarr"),
        (["per-sample", spec, "-o", f"{t}/g.txt"], ".zarr store or an .npz file"),
        (["ntk", spec, "-o", f"{t}/nodir/k.zarr"], "does not exist"),
    ]
    for argv, msg in cases:
        rc, err = _err(argv + ["--workers", "0"], capsys)
        assert rc == 2 and err.startswith("jacobian-bp: error:") and msg in err, (argv, err)
    assert (tmp_path / "folder.zarr" / "keep.txt").read_text() == "user data"  # never replaced
    assert not (tmp_path / "k.zarr").exists() and not (tmp_path / "g.npz").exists()
    # an unreachable scheduler: one line, exit 2
    rc, err = _err(["ntk", spec, "--batch", "4", "-o", f"{t}/k.zarr", "--scheduler", "tcp://127.0.0.1:9",
                    "--timeout", "2"], capsys)
    assert rc == 2 and "cannot connect to the scheduler at 'tcp://127.0.0.1:9'" in err
    rc = main(["ntk", spec, "-o", f"{t}/k.zarr", "--scheduler", "tcp://x:1", "--workers", "3"])
    assert rc == 2 and "not allowed with argument" in capsys.readouterr().err


def test_missing_dask_is_one_line_naming_the_extra(tmp_path):
    code = BLOCK_DASK_IMPORTS + (
        "from jacobian_bp.cli import main\n"
        f"sys.exit(main(['ntk', 'damadi-2layer', '--batch', '4', '-o', {str(tmp_path / 'k.zarr')!r}]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jacobian-bp: error:")
    assert 'pip install "jacobian_bp[dask]"' in lines[0]
    assert not (tmp_path / "k.zarr").exists()
