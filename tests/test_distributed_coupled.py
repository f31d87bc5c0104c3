"""A network whose samples are coupled (batch norm in training mode) cannot be cut into chunks: refused, not wrong."""
import numpy as np
import pytest

pytest.importorskip("dask")

from jacobian_bp.errors import UnsupportedInputError  # noqa: E402
from jacobian_bp.spec import load_spec  # noqa: E402


def test_chunked_routes_refuse_a_coupled_network():
    from jacobian_bp.uses import distributed as jd

    s = load_spec({"input": 3, "layers": [{"type": "dense", "out_features": 4}, {"type": "batch_norm"},
                                          {"type": "tanh"}, {"type": "dense", "out_features": 2}, {"type": "softmax"}],
                   "loss": "cross_entropy", "convention": "pytorch"})
    X = np.random.default_rng(0).standard_normal((6, 3))
    Y = np.eye(2)[[0, 1, 1, 0, 1, 0]]
    for call in (lambda: jd.batch_jacobian(s.network, X, s.params(), chunks=2),
                 lambda: jd.gauss_newton(s.network, X, Y, s.params(), chunks=2),
                 lambda: jd.empirical_ntk(s.network, X, s.params(), chunks=3)):
        with pytest.raises(UnsupportedInputError, match="couples its samples"):
            call()
