"""Leftovers of issues #12/#13: bare ``nn.LSTM``/``nn.RNN`` import, a residual block's parameter facts, the typed
``display_notation`` of a Jacobian, the public ``CONVENTION_CHOICES``, readable printing of symbolic results.

Oracles: torch's own modules (``nn.LSTM``, ``nn.RNN`` and ``loss.backward()``), the sub-layers' own facts, SymPy's
``lambdify``/``subs`` on plain symbols, the network's numeric gradient.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy

from jacobian_bp.errors import SpecError


# ---------------------------------------------------------------------------------------------------- a. nn.LSTM / nn.RNN
def _torch_states(torch, module, X, batch_first):
    out, state = module(torch.tensor(X if batch_first else X.transpose(1, 0, 2)))
    h_n = state[0] if isinstance(state, tuple) else state
    out = out.detach().numpy()
    return h_n[-1].detach().numpy(), (out if batch_first else out.transpose(1, 0, 2))


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
@pytest.mark.parametrize("batch_first", [True, False])
def test_a_bare_recurrent_module_imports_with_the_states_the_user_picks(kind, batch_first):
    torch = pytest.importorskip("torch")
    from jacobian_bp.uses.torch_import import from_torch

    torch.manual_seed(3)
    module = getattr(torch.nn, kind)(3, 4, batch_first=batch_first).double()
    X = np.random.default_rng(0).standard_normal((5, 6, 3))
    last, every = _torch_states(torch, module, X, batch_first)
    got = from_torch(module, X, recurrent_output="last").predict(X)
    assert got.shape == (5, 4) and np.max(np.abs(got - last)) <= 1e-12 * max(1.0, np.max(np.abs(last)))
    got = from_torch(module, X, recurrent_output="all").predict(X)  # every state, flattened row-major per sample
    assert got.shape == (5, 24) and np.max(np.abs(got - every.reshape(5, -1))) <= 1e-12
    wrapped = from_torch(torch.nn.Sequential(module), X, recurrent_output="last")  # the same inside a Sequential
    assert np.max(np.abs(wrapped.predict(X) - last)) <= 1e-12


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_the_ambiguous_choice_is_a_one_line_error_naming_both(kind):
    torch = pytest.importorskip("torch")
    from jacobian_bp.uses.torch_import import from_torch

    module = getattr(torch.nn, kind)(3, 2, batch_first=True).double()
    X = np.zeros((2, 4, 3))
    with pytest.raises(SpecError) as err:
        from_torch(module, X)
    msg = str(err.value)
    assert "\n" not in msg and kind in msg and "recurrent_output='last'" in msg and "'all'" in msg
    with pytest.raises(SpecError, match="recurrent_output must be one of 'last', 'all'"):
        from_torch(module, X, recurrent_output="first")


def test_an_imported_rnn_s_gradient_is_torch_s_backward_in_torch_s_names():
    torch = pytest.importorskip("torch")
    from jacobian_bp.uses.torch_import import from_torch

    torch.manual_seed(5)
    module = torch.nn.RNN(3, 4, batch_first=True).double()
    X = np.random.default_rng(1).standard_normal((4, 5, 3))
    Y = np.random.default_rng(2).standard_normal((4, 4))
    tn = from_torch(module, X, loss=torch.nn.MSELoss(), recurrent_output="last")
    out, h = module(torch.tensor(X))
    torch.nn.MSELoss()(h[-1], torch.tensor(Y)).backward()
    ours = tn.gradient_dict(X, Y)
    assert list(ours) == [n for n, _ in module.named_parameters()]
    for name, p in module.named_parameters():  # b_ih and b_hh each get the gradient of the one Elman bias
        ref = p.grad.numpy()
        assert np.max(np.abs(ours[name] - ref)) <= 1e-12 * max(1.0, np.max(np.abs(ref))), name


# ---------------------------------------------------------------------------------------------------- b. residual facts
def test_a_residual_block_asks_the_sub_layer_that_owns_a_parameter():
    from jacobian_bp.layers.attention import SelfAttention
    from jacobian_bp.layers.base import Layer
    from jacobian_bp.layers.dense import Dense
    from jacobian_bp.layers.normalization import LayerNorm
    from jacobian_bp.layers.residual import Residual

    dense = Residual([Dense(4), Dense(4, bias=False)])
    dense.build((4,))
    assert [dense.param_role(n) for n in ("W.1", "b.1", "W.2")] == ["weight", "bias", "weight"]
    assert dense.param_symbol("W.1") is None  # Dense states no letter: the notation's matrix letter
    att = Residual([LayerNorm(), SelfAttention(heads=2)])
    att.build((3, 4))
    sa, ln = att.body[1], att.body[0]
    for local, (layer, sub) in {"W_Q.2": (sa, "W_Q"), "b_O.2": (sa, "b_O"), "gamma.1": (ln, "gamma"),
                                "beta.1": (ln, "beta")}.items():
        assert att.param_role(local) == layer.param_role(sub)
        assert att.param_symbol(local) == layer.param_symbol(sub) is not None
    assert att.param_symbol("W_Q") == r"\mathbf{W}_{Q}"  # the bare name the notation asks with

    class Scale(Layer):  # a layer whose names say otherwise: its "shift" is a bias, its letter is c
        kind = "scale_test"
        parametric = True
        param_names = ("shift",)

        def param_role(self, local):
            return "bias" if local == "shift" else "weight"

        def param_symbol(self, local):
            return r"\mathbf{c}"

    block = Residual([Scale()])
    assert block.param_role("shift.1") == "bias" and block.param_symbol("shift.1") == r"\mathbf{c}"
    nested = Residual([Residual([Scale()])])
    assert nested.param_role("shift.1.1") == "bias"


# ---------------------------------------------------------------------------------------------------- c. display_notation
def test_display_notation_is_a_typed_constructor_attribute():
    from jacobian_bp.engine.jacobian import Jacobian, Space, hstack
    from jacobian_bp.spec import load_spec

    a, b, c = Space("a", (2,), r"\mathbf{a}"), Space("b", (3,), r"\mathbf{b}"), Space("c", (2,), r"\mathbf{c}")
    J = Jacobian(np.ones((2, 3)), a, b, display_notation="ganev")
    assert J.display_notation == "ganev"
    K = Jacobian(np.ones((3, 2)), b, c)
    assert K.display_notation is None and (J @ K).display_notation == "ganev"  # a product keeps its parts' mark
    assert hstack([J, Jacobian(np.ones((2, 2)), a, c)]).display_notation == "ganev"
    with pytest.raises(TypeError, match="display_notation"):
        Jacobian(np.ones((2, 3)), a, b, display_notation=3)
    with pytest.raises(TypeError, match="display_notation"):
        J.display_notation = ["park"]
    s = load_spec({"input": [3], "layers": [{"type": "dense", "out_features": 2}], "loss": "mse", "convention": "park"})
    Jt = s.network.jacobian_theta(np.ones(3), s.params())
    assert Jt.display_notation == "park" and all(blk.display_notation == "park" for blk in Jt.blocks)


# ---------------------------------------------------------------------------------------------------- d. choices
def test_convention_choices_are_public_and_drive_the_schema():
    from jacobian_bp.engine.conventions import CONVENTION_CHOICES, Convention
    from jacobian_bp.spec import spec_schema

    assert CONVENTION_CHOICES["theta_order"] == ("forward", "reverse", "weights_first")
    with pytest.raises(SpecError):
        Convention(name="bad", weight_layout="sideways")
    schema = str(spec_schema())
    for allowed in CONVENTION_CHOICES.values():
        for v in allowed:
            assert repr(v) in schema


# ---------------------------------------------------------------------------------------------------- e. readable symbols
