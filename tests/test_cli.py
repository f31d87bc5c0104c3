"""The jacobian-bp command line, used as a user would."""
import json
import subprocess
import sys

import numpy as np
import scipy.sparse as sp

import jacobian_bp as jb
from jacobian_bp.cli import main
from jacobian_bp.spec import load_spec


def test_verify_example(capsys):
    assert main(["verify", "damadi-2layer", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert "verdict: PASS" in out and "closed form" in out and "finite differences" in out


def test_gradient_and_jacobian_files(tmp_path, capsys):
    g = tmp_path / "g.npz"
    assert main(["gradient", "damadi-1layer", "-o", str(g), "--seed", "3"]) == 0
    z = np.load(g)
    assert set(z.files) == {"theta", "W1", "b1"} and z["W1"].shape == (4, 3)
    spec = load_spec("damadi-1layer")
    net = spec.network
    x, y = jb.spec.generate_data(net, 1, 3)
    np.testing.assert_allclose(z["theta"], net.gradient(x, y, net.init_params(0)).vector)
    J = tmp_path / "J.npz"
    assert main(["jacobian", "damadi-1layer", "-o", str(J), "--seed", "3"]) == 0
    M = sp.load_npz(J)
    assert M.shape == (3, 15)
    np.testing.assert_allclose(M.toarray(), np.hstack([np.kron(np.eye(3), x[None]), np.eye(3)]))


def test_params_and_data_files(tmp_path):
    net = load_spec("damadi-2layer").network
    p = net.init_params(5)
    np.savez(tmp_path / "p.npz", **p)
    x, y = np.linspace(-1, 1, 4), np.array([0.0, 0.0, 1.0])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    assert main(["gradient", "damadi-2layer", "--params", str(tmp_path / "p.npz"), "--data", str(tmp_path / "d.npz"),
                 "-o", str(tmp_path / "g.npz")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "g.npz")["theta"], net.gradient(x, y, p).vector)


def test_errors_are_reported_not_raised(tmp_path, capsys):
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"input": 4, "layers": [{"type": "dense", "out_features": 2}], "bogus": 1}))
    assert main(["verify", str(f)]) == 2
    assert "unknown key(s) bogus" in capsys.readouterr().err
    np.savez(tmp_path / "p.npz", W1=np.ones((2, 2)))
    assert main(["verify", "damadi-1layer", "--params", str(tmp_path / "p.npz")]) == 2


def test_console_script_and_json_report():
    out = subprocess.run([sys.executable, "-m", "jacobian_bp.cli", "verify", "damadi-1layer", "--json", "--no-torch"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["verdict"] == "PASS"
