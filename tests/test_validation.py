"""Bad input: every public entry point fails with a clear message."""
import json

import numpy as np
import pytest

import jacobian_bp as jb
from jacobian_bp.errors import DataError, MemoryBudgetError, ShapeError, SpaceMismatchError, SpecError
from jacobian_bp.spec import load_spec


@pytest.fixture
def net():
    return jb.Network([jb.Dense(5), jb.ReLU(), jb.Dense(3), jb.Softmax()], "cross_entropy", 4, "damadi")


def test_shape_errors_name_layer_expected_received(net):
    p = net.init_params(0)
    with pytest.raises(ShapeError, match=r"layer 1 \(dense\).*expected input of shape \(4,\).*received \(5,\)"):
        net.gradient(np.ones(5), np.eye(3)[0], p)
    bad = dict(p, W1=np.ones((5, 4)))
    with pytest.raises(ShapeError, match=r"parameter W1 expected shape \(4, 5\) under convention 'damadi', received \(5, 4\)"):
        net.gradient(np.ones(4), np.eye(3)[0], bad)
    with pytest.raises(ShapeError, match="expected a target of shape"):
        net.gradient(np.ones(4), np.ones(4), p)
    with pytest.raises(ShapeError, match=r"layer 2 \(dense\): expected input of shape \(7,\)"):
        jb.Network([jb.Dense(5), jb.ReLU(), jb.Dense(3, in_features=7)], "mse", 4)


def test_data_errors(net):
    p = net.init_params(0)
    with pytest.raises(DataError, match="NaN or Inf"):
        net.gradient(np.array([1, np.nan, 0, 0]), np.eye(3)[0], p)
    with pytest.raises(DataError, match="W1 contains NaN"):
        net.gradient(np.ones(4), np.eye(3)[0], dict(p, W1=np.full((4, 5), np.inf)))
    with pytest.raises(DataError, match="one-hot or a probability distribution"):
        net.gradient(np.ones(4), np.array([0.5, 0.6, 0.0]), p)
    with pytest.raises(DataError, match="empty batch"):
        net.gradient(np.ones((0, 4)), np.ones((0, 3)), p)
    with pytest.raises(DataError, match="missing"):
        net.gradient(np.ones(4), np.eye(3)[0], {"W1": p["W1"]})
    bce = jb.Network([jb.Dense(2), jb.Sigmoid()], "bce", 3)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        bce.gradient(np.ones(3), np.array([1.5, 0.0]), bce.init_params(0))


def test_space_mismatch_names_both_spaces(net):
    p = net.init_params(0)
    x = np.ones(4)
    f = net.chain_factors(x, p, 1)
    with pytest.raises(SpaceMismatchError, match=r"input space a\[1\].*output space z\[2\]"):
        f[0] @ f[0]


def test_spec_errors(tmp_path):
    with pytest.raises(SpecError, match="unknown key"):
        load_spec({"input": 4, "layers": [{"type": "dense", "out_features": 3}], "colour": 1})
    with pytest.raises(SpecError, match=r"layers\[0\] \(dense\): unknown key\(s\) width"):
        load_spec({"input": 4, "layers": [{"type": "dense", "width": 3}]})
    with pytest.raises(SpecError, match="unknown layer type 'swish'"):
        load_spec({"input": 4, "layers": [{"type": "dense", "out_features": 3}, {"type": "swish"}]})
    with pytest.raises(SpecError, match="unknown loss"):
        load_spec({"input": 4, "layers": [{"type": "dense", "out_features": 3}], "loss": "hinge"})
    f = tmp_path / "bad.json"
    f.write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        load_spec(str(f))
    with pytest.raises(SpecError, match="must be a number"):
        load_spec({"input": 4, "layers": [{"type": "dense", "out_features": {"__import__": "os"}}]})
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(str(tmp_path / "missing.json"))
    with pytest.raises(SpecError, match="first layer must be parametric"):
        load_spec({"input": 4, "layers": [{"type": "relu"}]})


def test_memory_budget_refuses_lenet_batch():
    net = load_spec("lenet-300-100").network
    p = net.init_params(0)
    X = np.random.default_rng(0).standard_normal((64, 784))
    J = net.batch_jacobian_theta(X, p)
    with pytest.raises(MemoryBudgetError, match=r"estimated 1\.3 GiB exceeds the memory budget of 512\.0 MiB"):
        with jb.memory_budget(512 * 1024**2):
            J.to_dense()


def test_spec_roundtrip_json(tmp_path):
    from jacobian_bp.spec import EXAMPLES

    f = tmp_path / "net.json"
    f.write_text(json.dumps(EXAMPLES["damadi-2layer"]))
    assert load_spec(str(f)).network.n_params == 43


def test_symbolic_entries_are_never_parsed_from_strings():
    net = jb.Network([jb.Dense(2), jb.Sigmoid()], "bce", 2)
    p = net.init_params(0)
    p["W1"] = np.array([['__import__("os").system("true")', 1], [1, 1]], dtype=object)
    with pytest.raises(DataError, match="strings are never parsed"):
        net.gradient(np.ones(2), np.array([0.0, 1.0]), p)
    from jacobian_bp.backend.operators import Diagonal
    with pytest.raises(TypeError, match="received str"):
        Diagonal(np.array(["x + 1"], dtype=object)).to_sympy()
