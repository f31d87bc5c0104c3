"""Hypothesis: random architectures (depth 1–4, widths 1–8), conventions, losses and batch sizes."""
from hypothesis import given, settings, strategies as st

import jacobian_bp as jb
from conftest import rel_err

ACTS = ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "arctan", "softplus", "elu", "softmax"]
LOSSES = [("cross_entropy", "softmax"), ("bce", "sigmoid"), ("mse", "identity"), ("mse", "tanh")]


@st.composite
def networks(draw):
    depth = draw(st.integers(1, 4))
    widths = [draw(st.integers(1, 8)) for _ in range(depth + 1)]
    loss, last = draw(st.sampled_from(LOSSES))
    if loss == "cross_entropy" and widths[-1] < 2:
        widths[-1] = 2
    layers = []
    for l in range(depth):
        layers.append(jb.Dense(widths[l + 1]))
        layers.append(jb.layer_class(last if l == depth - 1 else draw(st.sampled_from(ACTS)))())
    conv = draw(st.sampled_from(list(jb.PRESETS)))
    red = draw(st.sampled_from(["sum", "mean"]))
    net = jb.Network(layers, loss, widths[0], jb.get_convention(conv).replace(reduction=red))
    return net, draw(st.integers(1, 4)), draw(st.integers(0, 10_000))


@settings(max_examples=40, deadline=None)
@given(networks())
def test_chain_equals_closed_form_and_fd(case):
    net, N, seed = case
    from jacobian_bp.spec import generate_data

    p = net.init_params(seed)
    X, Y = generate_data(net, N, seed)
    rep = jb.verify(net, X, Y, p, fd_max_coords=12, fd_directions=1, use_torch=False, seed=seed)
    bad = [e for e in rep.errors if not e.ok]
    # finite differences can only fail at ReLU kinks, which random data avoids almost surely
    assert not bad, rep.to_text()
    J = net.jacobian_theta(net.as_batch(X)[0][0], p)
    assert J.shape == (net.n_out, net.n_params)
    assert rel_err(J.to_sparse().toarray(), J.to_dense()) == 0.0
