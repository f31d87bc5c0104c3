r"""Recurrent layers unrolled over time: the Elman RNN (tanh) and the LSTM, exactly as PyTorch defines them.

One sample is a sequence :math:`\mathbf X\in\mathbb R^{T\times d}` (``in_shape = (T, d)``), flattened row-major:
:math:`\mathbf x = \operatorname{vec}_r\mathbf X = (\mathbf x_1;\dots;\mathbf x_T)`, time step by time step.
The state starts at zero (:math:`\mathbf h_0 = \mathbf 0`, :math:`\mathbf c_0 = \mathbf 0`) and the layer
outputs the last hidden state :math:`\mathbf h_T` (``output="last"``, shape ``(H,)``) or every hidden state
(``output="all"``, shape ``(T, H)``, rows :math:`\mathbf h_1^\top,\dots,\mathbf h_T^\top`).

Elman RNN (``torch.nn.RNN(d, H, nonlinearity="tanh")``), local parameters ``W_ih`` :math:`(H\times d)`,
``W_hh`` :math:`(H\times H)`, ``b`` :math:`(H)`:

.. math::

   \mathbf h_t = \tanh(\mathbf W_{ih}\mathbf x_t + \mathbf b + \mathbf W_{hh}\mathbf h_{t-1}).

*One bias.*  torch keeps two, ``b_ih`` and ``b_hh``, but they only ever enter as their sum: their Jacobians
are the same matrix, so :math:`\mathbf J_\theta\mathbf z` would carry two identical column blocks.  The layer
keeps Elman's single :math:`\mathbf b` (:meth:`RNN.from_torch_module` sums ``b_ih + b_hh``); torch's gradient
w.r.t. ``b_ih`` and w.r.t. ``b_hh`` each equal :math:`\nabla_{\mathbf b}`.  The LSTM keeps both biases, as the
issue asks (torch's parameter list one to one).

LSTM (``torch.nn.LSTM(d, H)``, gate order i, f, g, o), local parameters ``W_ih`` :math:`(4H\times d)`,
``W_hh`` :math:`(4H\times H)`, ``b_ih``, ``b_hh`` :math:`(4H)`:

.. math::

   \mathbf p_t = \mathbf W_{ih}\mathbf x_t + \mathbf b_{ih} + \mathbf W_{hh}\mathbf h_{t-1} + \mathbf b_{hh}
   = (\mathbf p^i_t;\mathbf p^f_t;\mathbf p^g_t;\mathbf p^o_t),\quad
   \mathbf i_t = \sigma(\mathbf p^i_t),\ \mathbf f_t = \sigma(\mathbf p^f_t),\ \mathbf g_t = \tanh(\mathbf p^g_t),\
   \mathbf o_t = \sigma(\mathbf p^o_t),

   \mathbf c_t = \mathbf f_t\odot\mathbf c_{t-1} + \mathbf i_t\odot\mathbf g_t,\qquad
   \mathbf h_t = \mathbf o_t\odot\tanh(\mathbf c_t).

The unrolling machinery (backpropagation through time as a product of Jacobians, the per-step
factors, :class:`~jacobian_bp.layers.unrolled.UnrolledJacobian`) lives in :mod:`jacobian_bp.layers.unrolled`;
this module holds the two cells, their torch twins, torch-module import and LaTeX facts.

Symbolic entries: ``forward`` and every Jacobian accept NumPy object arrays of SymPy expressions
(``sympy.tanh``, ``1/(1+exp(-p))``) -- for tiny :math:`T` only, the expressions grow with every step.
"""
from __future__ import annotations

import numpy as np
import sympy

from ..errors import SpecError
from ..backend.operators import Dense as DenseOp, Diagonal, Product
from .registry import register
from .unrolled import Trajectory, UnrolledJacobian, UnrolledRecurrent, sigmoid_any, tanh_any, zeros_of

__all__ = ["RNN", "LSTM", "UnrolledJacobian", "Trajectory"]


class _Recurrent(UnrolledRecurrent):
    """The recurrent layers' LaTeX facts, SymPy form and torch-module checks (the cells follow)."""

    # ------------------------------------------------------------------ LaTeX facts
    def latex_param(self, local: str, tag) -> str:
        r"""LaTeX of the local parameter ``local`` at stage (tag) ``tag``: :math:`\mathbf W_{hh}^{[l]}`, ..."""
        return rf"{self.param_latex[local]}^{{[{tag}]}}"

    @staticmethod
    def _subscripted(tex: str) -> str:
        """``\\mathbf{W_hh}`` (the engine's generic parameter symbol) written with a proper subscript."""
        for raw, sub in (("W_ih", "W_{ih}"), ("W_hh", "W_{hh}"), ("b_ih", "b_{ih}"), ("b_hh", "b_{hh}")):
            tex = tex.replace(raw, sub)
        return tex

    def _par(self, nt, local: str, l) -> str:
        if nt is None:
            return self.latex_param(local, l)
        return self._subscripted(nt.param(local, l))

    def latex_describe(self) -> str:
        T, d = self.in_shape if self.in_shape else ("?", "?")
        out = r"last state $\mathbf{h}_T$" if self.output == "last" else r"all states $\mathbf{h}_1,\dots,\mathbf{h}_T$"
        return rf"{self._latex_kind()} over $T = {T}$ steps, ${d}\to {self.hidden_size}$, {out}"

    def latex_name(self) -> str:
        return rf"\operatorname{{{self._latex_kind()}}}"

    def _latex_kind(self) -> str:
        return self.kind.upper()

    def _latex_out(self, l_out: str) -> str:
        return r"\mathbf{h}_T" if self.output == "last" else r"(\mathbf{h}_1;\dots;\mathbf{h}_T)"

    def _block_row(self, block: str) -> str:
        r"""The input Jacobian from its block :math:`s` (``last``: a block row over :math:`s`) or its block
        :math:`(t, s)` (``all``: block lower triangular, zero above the diagonal)."""
        if self.output == "last":
            return rf"\Big[\,{block}\,\Big]_{{s=1,\dots,T}}"
        return (rf"\Big[\,{block}\ \text{{if }} s\le t,\ \mathbf{{0}}\text{{ else}}\,\Big]_{{t,s=1,\dots,T}}")

    def latex_paragraph(self, nt, l, a_prev: str) -> str:
        r"""A paragraph of the derivation (LaTeX text with displays) on stage ``l``: the recursion, the per-step
        factor :math:`\mathbf J_{\mathbf s_{t-1}}\mathbf s_t`, the unrolled chain and the sums over time steps of
        :math:`\mathbf J_{\operatorname{vec}\mathbf W_{hh}}\mathbf z^{[l]}` and of the gradient.  ``nt`` is the
        renderer's notation (None: the layer's own symbols), ``a_prev`` the LaTeX of the layer's input."""
        P = {k: self._par(nt, k, l) for k in self.param_shapes()}
        z = nt.z(l) if nt is not None else rf"\mathbf{{z}}^{{[{l}]}}"
        T, d = self.in_shape
        H, G = self.hidden_size, self.G
        Whh, Wih = P["W_hh"], P["W_ih"]
        out_txt = (rf"${z} = \mathbf{{h}}_T$" if self.output == "last"
                   else rf"${z} = (\mathbf{{h}}_1;\dots;\mathbf{{h}}_T)$, all states stacked")
        head = (rf"Layer ${l}$ is {self._paragraph_model(P, T, d, H)} It reads ${a_prev} = (\mathbf{{x}}_1;\dots;\mathbf{{x}}_T)$ "
                rf"(the rows of the ${T}\times {d}$ input stacked) and outputs {out_txt}.")
        s_t, s_prev = self._state_tex("t"), self._state_tex("t-1")
        J_step = rf"\mathbf{{J}}_{{{s_prev}}}{s_t}"
        chain = rf"\prod_{{t=T}}^{{s+1}}{J_step}"
        S = r"\mathbf{S}" if self.kind == "lstm" else ""
        Ep = rf"\mathbf{{J}}_{{\mathbf{{p}}_s}}{self._state_tex('s')}"
        kron = lambda v: rf"\big(\mathbf{{I}}_{{{G}}}\otimes {v}^\top\big)"  # noqa: E731
        bias = " + ".join(P[b] for b in self._bias_names()) if self.bias else ""
        kh, kx = kron(r"\mathbf{h}_{s-1}"), kron(r"\mathbf{x}_s")
        lines = [rf"{J_step} &= {self._step_factor_tex(Whh)}",
                 rf"\mathbf{{J}}_{{\operatorname{{vec}}{Whh}}}\mathbf{{h}}_T &= {S}\sum_{{s=1}}^{{T}}\Big({chain}\Big){Ep}\,{kh}",
                 rf"\mathbf{{J}}_{{\operatorname{{vec}}{Wih}}}\mathbf{{h}}_T &= {S}\sum_{{s=1}}^{{T}}\Big({chain}\Big){Ep}\,{kx}",
                 rf"\mathbf{{J}}_{{\mathbf{{x}}_s}}\mathbf{{h}}_T &= {S}\Big({chain}\Big){Ep}\,{Wih}"]
        body = (r" Backpropagation through time is Algorithm~1 applied to the unrolled recursion: the Jacobians are "
                r"products of the per-step factors, and a weight used at every step (" + rf"${Whh}$, ${Wih}$" +
                (rf", ${bias}$" if bias else "") + r") collects one chained block per time step:"
                + "\n\\begin{align*}\n" + " \\\\\n".join(lines) + "\n\\end{align*}\n"
                + self._paragraph_tail(P) +
                (rf" For the state $\mathbf{{h}}_t$ (row block $t$ of ${z}$) the sums run over $s \le t$." if self.output == "all" else "")
                + " "
                rf"The gradient of ${Whh}$ is the sum of $T = {T}$ per-step contributions "
                rf"$\bar{{\mathbf{{p}}}}_s\mathbf{{h}}_{{s-1}}^\top$ (the first is zero: $\mathbf{{h}}_0 = \mathbf{{0}}$), "
                rf"$\bar{{\mathbf{{p}}}}_s = ({Ep})^\top\boldsymbol{{\lambda}}_s$ with $\boldsymbol{{\lambda}}_{{s-1}} = "
                rf"({self._state_jac_tex('s')})^\top\boldsymbol{{\lambda}}_s$ running back from the output's gradient.")
        return head + body


    def weight_latex(self, local: str) -> str:
        """A parameter's LaTeX without stage tag (``\\mathbf{W}_{hh}``)."""
        return self.param_latex[local]

    def sympy_vector(self, z, params=None):
        r"""The layer on SymPy symbols ``z`` (the flat sequence): parameters default to real symbols
        ``W_ih_{ij}``, ``W_hh_{ij}``, ``b_i`` (tiny :math:`T` only)."""
        z = list(z)
        if params is None:
            params = {}
            for name, shape in self.param_shapes().items():
                syms = [sympy.Symbol(f"{name}_{'_'.join(str(i + 1) for i in idx)}", real=True)
                        for idx in np.ndindex(*shape)]
                params[name] = np.array(syms, dtype=object).reshape(shape)
        A = np.array(z, dtype=object).reshape((1,) + tuple(self.in_shape))
        return list(np.ravel(self.forward(A, params)[0]))

    def describe(self):
        shape = f"{self.in_shape[0]}x{self.in_shape[1]}" if self.in_shape else "?"
        return f"{self.kind} {shape}->{self.hidden_size} output={self.output}" + ("" if self.bias else " no-bias")

    #: torch's recurrent modules return ``(output, h_n)`` (``nn.RNN``) or ``(output, (h_n, c_n))`` (``nn.LSTM``): the
    #: importer asks which states the layer outputs (``from_torch(..., recurrent_output=...)``, passed on as ``output``):
    #: ``"all"`` (torch's ``output``, every state) or ``"last"`` (``h_n``, the last state)
    torch_output_choices = ("last", "all")

    @classmethod
    def torch_module_output(cls, module, A, output: str):
        r"""The torch module's output in the package's layout for a batch-first float64 tensor ``A`` ``(N, T, d)``.

        The module runs on ``A`` (transposed to ``(T, N, d)`` and back when ``batch_first=False``); ``output="all"``
        returns torch's ``output`` ``(N, T, H)``, ``"last"`` the last state ``h_n[-1]`` ``(N, H)``.
        """
        if output not in cls.torch_output_choices:
            raise SpecError(f"{cls.kind} layer from torch: output must be 'last' or 'all', received {output!r}")
        first = bool(getattr(module, "batch_first", False))
        out, state = module(A if first else A.transpose(0, 1))
        h_n = state[0] if isinstance(state, tuple) else state
        if output == "last":
            return h_n[-1]
        return out if first else out.transpose(0, 1)

    @classmethod
    def _module_checks(cls, module, in_shape, expected_type: str) -> tuple[int, int, int]:
        """Common checks of a torch recurrent module; returns ``(T, d, H)``."""
        who = f"{cls.kind} layer from torch"
        if type(module).__name__ != expected_type:
            raise SpecError(f"{who}: expected a torch.nn.{expected_type}, received {type(module).__name__}")
        if int(module.num_layers) != 1:
            raise SpecError(f"{who}: num_layers must be 1 (stack single-layer modules instead), received {module.num_layers}")
        if bool(module.bidirectional):
            raise SpecError(f"{who}: bidirectional modules are not supported, received bidirectional=True")
        if int(getattr(module, "proj_size", 0) or 0) != 0:
            raise SpecError(f"{who}: proj_size must be 0, received {module.proj_size}")
        shape = tuple(int(s) for s in in_shape) if isinstance(in_shape, (tuple, list)) else None
        if shape is None or len(shape) != 2 or shape[0] < 1:
            raise SpecError(f"{who}: in_shape must be (T, d) with T >= 1, received {in_shape!r}")
        if shape[1] != int(module.input_size):
            raise SpecError(f"{who}: in_shape {shape} has d = {shape[1]} but the module's input_size is {module.input_size}")
        return shape[0], shape[1], int(module.hidden_size)

    @classmethod
    def _torch_import(cls, module, d: int, H: int, output: str) -> tuple[dict, dict[str, np.ndarray]]:
        """``(constructor kwargs, canonical local parameters)`` of a checked torch module: float64 copies of
        ``weight_ih_l0``, ``weight_hh_l0`` and, when the module has biases, the subclass's :meth:`_torch_biases`."""
        bias = bool(module.bias)
        params = {"W_ih": cls._np(module.weight_ih_l0), "W_hh": cls._np(module.weight_hh_l0)}
        if bias:
            params.update(cls._torch_biases(module))
        return {"hidden_size": H, "output": output, "input_size": d, "bias": bias}, params

    @classmethod
    def _torch_biases(cls, module) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        """The canonical bias parameters of a torch module that has biases."""
        raise NotImplementedError

    @staticmethod
    def _np(t) -> np.ndarray:
        return t.detach().to("cpu").double().numpy().copy()


# ====================================================================== Elman RNN
@register("rnn")
class RNN(_Recurrent):
    r"""Elman RNN :math:`\mathbf h_t = \tanh(\mathbf W_{ih}\mathbf x_t + \mathbf b + \mathbf W_{hh}\mathbf h_{t-1})`, unrolled over time.

    ``torch.nn.RNN(d, H)`` with one bias :math:`\mathbf b = \mathbf b_{ih} + \mathbf b_{hh}` (module docstring: why).

    Parameters
    ----------
    hidden_size : int
        :math:`H \ge 1`.
    output : {"last", "all"}
        Output :math:`\mathbf h_T` ``(H,)`` or every state ``(T, H)`` (default ``"last"``).
    input_size : int, optional
        :math:`d`; checked against the input shape ``(T, d)`` when given.
    bias : bool
        Whether the layer has :math:`\mathbf b` (default True).

    Raises
    ------
    SpecError
        ``hidden_size``/``input_size`` not a positive integer, ``output`` not ``last``/``all``, ``bias`` not a boolean.
    ShapeError
        At build: an input that is not ``(T, d)`` with :math:`T, d \ge 1`.
    """

    kind = "rnn"
    n_gates = 1
    torch_module_types = ("RNN",)
    block_symbol = ("U", r"\mathbf J_{{\mathbf x}}\mathbf h\ \text{{(unrolled RNN)}}", r"\mathbf{{U}}^{{[{l}]}}")

    @classmethod
    def protocol_examples(cls):
        return [({"hidden_size": 3}, (4, 2)), ({"hidden_size": 2, "output": "all"}, (3, 3)),
                ({"hidden_size": 3, "bias": False}, (1, 2))]

    def _run(self, X, pre_x, params, symbolic):
        T, N = X.shape[0], X.shape[1]
        H = self.hidden_size
        W_hh = params["W_hh"]
        hs = [zeros_of((N, H), symbolic)]
        for t in range(T):
            p = pre_x[t] if t == 0 else pre_x[t] + hs[-1] @ W_hh.T
            hs.append(tanh_any(p))
        return Trajectory(symbolic, X=X, h=np.stack(hs))

    def _zero_cotangent(self, lam_h):
        return (lam_h,)

    def _cell_vjp(self, tr, t, lam):
        h = tr.h[t + 1]
        return lam[0] * (1 - h * h), (None,)

    def _cell_jvp(self, tr, t, dp, ds):
        h = tr.h[t + 1]
        return ((1 - h * h) * dp,)

    def _gate_operators(self, tr):
        return [Diagonal(1 - tr.h[t + 1, 0] ** 2) for t in range(self.T)]

    def _step_operators(self, tr, params):
        W = DenseOp(params["W_hh"])
        return [Product([Diagonal(1 - tr.h[t + 1, 0] ** 2), W]) for t in range(self.T)]

    def torch_forward(self, A, params):
        r"""The recursion with ``torch.tanh`` and ``torch.nn.functional.linear`` (float64, batch-first)."""
        import torch
        import torch.nn.functional as F

        N = A.shape[0]
        h = A.new_zeros((N, self.hidden_size))
        outs = []
        for t in range(self.T):
            p = F.linear(A[:, t], params["W_ih"], params.get("b")) + (F.linear(h, params["W_hh"]) if t else 0)
            h = torch.tanh(p)
            outs.append(h)
        return h if self.output == "last" else torch.stack(outs, dim=1)

    @classmethod
    def from_torch_module(cls, module, in_shape, output: str = "last") -> tuple[dict, dict[str, np.ndarray]]:
        r"""``(constructor kwargs, canonical local parameters)`` of a ``torch.nn.RNN`` (tanh, one layer, unidirectional).

        The parameters are float64 copies: ``W_ih = weight_ih_l0``, ``W_hh = weight_hh_l0``,
        ``b = bias_ih_l0 + bias_hh_l0`` (the one Elman bias).  ``in_shape`` is the per-sample ``(T, d)``
        (``batch_first`` does not matter: samples are the first axis of the package's batches).

        Raises
        ------
        SpecError
            ``relu`` nonlinearity, ``num_layers > 1``, ``bidirectional``, a ``proj_size``, or an ``in_shape`` whose
            ``d`` is not the module's ``input_size``.
        """
        T, d, H = cls._module_checks(module, in_shape, "RNN")
        if getattr(module, "nonlinearity", "tanh") != "tanh":
            raise SpecError(f"rnn layer from torch: only nonlinearity='tanh' is supported, received {module.nonlinearity!r}")
        return cls._torch_import(module, d, H, output)

    @classmethod
    def _torch_biases(cls, module) -> dict[str, np.ndarray]:
        return {"b": cls._np(module.bias_ih_l0) + cls._np(module.bias_hh_l0)}

    @classmethod
    def torch_gradients(cls, module, grads: dict) -> dict[str, np.ndarray]:
        r"""The adjoint of the import: canonical gradients → torch's names.  ``b = b_ih + b_hh``, so
        :math:`\nabla_{\mathbf b_{ih}}\ell = \nabla_{\mathbf b_{hh}}\ell = \nabla_{\mathbf b}\ell`; the weights map one for one."""
        out = {"weight_ih_l0": np.asarray(grads["W_ih"]), "weight_hh_l0": np.asarray(grads["W_hh"])}
        if "b" in grads:
            out["bias_ih_l0"] = out["bias_hh_l0"] = np.asarray(grads["b"])
        return out

    # ------------------------------------------------------------------ LaTeX facts
    def _state_tex(self, t: str) -> str:
        return rf"\mathbf{{h}}_{{{t}}}"

    def _state_jac_tex(self, t: str) -> str:
        return rf"\mathbf{{J}}_{{\mathbf{{h}}_{{{t}-1}}}}\mathbf{{h}}_{{{t}}}"

    def _step_factor_tex(self, Whh: str) -> str:
        return rf"\operatorname{{diag}}\big(\mathbf{{1}}-\mathbf{{h}}_t^{{2}}\big)\,{Whh}"

    def _paragraph_model(self, P, T, d, H) -> str:
        b = rf" + {P['b']}" if self.bias else ""
        return (rf"an Elman RNN unrolled over $T = {T}$ time steps: with $\mathbf{{h}}_0 = \mathbf{{0}}$,"
                rf"\[\mathbf{{h}}_t = \tanh\big(\mathbf{{p}}_t\big),\qquad \mathbf{{p}}_t = {P['W_ih']}\mathbf{{x}}_t{b}"
                rf" + {P['W_hh']}\mathbf{{h}}_{{t-1}}\in\mathbb{{R}}^{{{H}}},\qquad t = 1,\dots,T.\]")

    def _paragraph_tail(self, P) -> str:
        return (r"Here $\mathbf{J}_{\mathbf{p}_s}\mathbf{h}_s = \operatorname{diag}(\mathbf{1}-\mathbf{h}_s^{2})$ and "
                r"$\mathbf{J}_{\mathbf{h}_s}\mathbf{h}_T = \prod_{t=T}^{s+1}\mathbf{J}_{\mathbf{h}_{t-1}}\mathbf{h}_t$: "
                r"its norm shrinks (or grows) geometrically with $T-s$ -- the vanishing (exploding) gradient of a tanh RNN.")

    def prose(self) -> str:
        return (r"an Elman RNN unrolled over time, $\mathbf{h}_t = \tanh(\mathbf{W}_{ih}\mathbf{x}_t + \mathbf{b} + "
                r"\mathbf{W}_{hh}\mathbf{h}_{t-1})$ from $\mathbf{h}_0 = \mathbf{0}$, whose Jacobians are products of the "
                r"per-step factors $\mathbf{J}_{\mathbf{h}_{t-1}}\mathbf{h}_t = \operatorname{diag}(\mathbf{1}-\mathbf{h}_t^{2})"
                r"\mathbf{W}_{hh}$ summed over the time steps (backpropagation through time)")

    def latex_forward(self, nt, l, a_prev, weight_layout):
        r""":math:`\mathbf h_T` with :math:`\mathbf h_t = \tanh(\mathbf W_{ih}\mathbf x_t + \mathbf b + \mathbf W_{hh}\mathbf h_{t-1})`."""
        Wih, Whh = self._par(nt, "W_ih", l), self._par(nt, "W_hh", l)
        b = rf" + {self._par(nt, 'b', l)}" if self.bias else ""
        return rf"{self._latex_out(l)},\quad \mathbf{{h}}_t = \tanh\big({Wih}\mathbf{{x}}_t{b} + {Whh}\mathbf{{h}}_{{t-1}}\big)"

    def latex_input_jacobian(self, params_latex):
        r"""Block :math:`s` of :math:`\mathbf J_{\mathbf x}\mathbf h_T`: :math:`\big(\prod_{t=T}^{s+1}\operatorname{diag}(\mathbf 1-\mathbf h_t^2)\mathbf W_{hh}\big)\operatorname{diag}(\mathbf 1-\mathbf h_s^2)\mathbf W_{ih}`."""
        Wih = self._subscripted(params_latex.get("W_ih", r"\mathbf{W}_{ih}"))
        Whh = self._subscripted(params_latex.get("W_hh", r"\mathbf{W}_{hh}"))
        D = lambda t: rf"\operatorname{{diag}}(\mathbf{{1}}-\mathbf{{h}}_{{{t}}}^{{2}})"  # noqa: E731
        last = self.output == "last"
        top = "T" if last else "t"
        block = rf"\Big(\textstyle\prod_{{u={top}}}^{{s+1}}{D('u')}{Whh}\Big){D('s')}{Wih}"
        return self._block_row(block)


# ====================================================================== LSTM
@register("lstm")
class LSTM(_Recurrent):
    r"""LSTM (``torch.nn.LSTM(d, H)``, gate order i, f, g, o), unrolled over time; see the module docstring.

    Parameters
    ----------
    hidden_size : int
        :math:`H \ge 1`.
    output : {"last", "all"}
        Output :math:`\mathbf h_T` ``(H,)`` or every hidden state ``(T, H)`` (default ``"last"``).
    input_size : int, optional
        :math:`d`; checked against the input shape when given.
    bias : bool
        Whether the layer has ``b_ih`` and ``b_hh`` (torch's ``bias``; default True).

    Raises
    ------
    SpecError
        ``hidden_size``/``input_size`` not a positive integer, ``output`` not ``last``/``all``, ``bias`` not a boolean.
    ShapeError
        At build: an input that is not ``(T, d)`` with :math:`T, d \ge 1`.
    """

    kind = "lstm"
    n_gates = 4
    torch_module_types = ("LSTM",)
    block_symbol = ("U", r"\mathbf J_{{\mathbf x}}\mathbf h\ \text{{(unrolled LSTM)}}", r"\mathbf{{U}}^{{[{l}]}}")

    def _bias_names(self):
        return ("b_ih", "b_hh")

    @classmethod
    def protocol_examples(cls):
        return [({"hidden_size": 2}, (3, 2)), ({"hidden_size": 2, "output": "all"}, (2, 3)),
                ({"hidden_size": 3, "bias": False}, (1, 2))]

    def _run(self, X, pre_x, params, symbolic):
        T, N = X.shape[0], X.shape[1]
        H = self.hidden_size
        W_hh = params["W_hh"]
        hs, cs = [zeros_of((N, H), symbolic)], [zeros_of((N, H), symbolic)]
        gi, gf, gg, go, tcs = [], [], [], [], []
        for t in range(T):
            p = pre_x[t] if t == 0 else pre_x[t] + hs[-1] @ W_hh.T
            i = sigmoid_any(p[..., :H])
            f = sigmoid_any(p[..., H:2 * H])
            g = tanh_any(p[..., 2 * H:3 * H])
            o = sigmoid_any(p[..., 3 * H:])
            c = i * g if t == 0 else f * cs[-1] + i * g
            tc = tanh_any(c)
            hs.append(o * tc)
            cs.append(c)
            for lst, v in ((gi, i), (gf, f), (gg, g), (go, o), (tcs, tc)):
                lst.append(v)
        return Trajectory(symbolic, X=X, h=np.stack(hs), c=np.stack(cs), i=np.stack(gi), f=np.stack(gf),
                          g=np.stack(gg), o=np.stack(go), tc=np.stack(tcs))

    def _zero_cotangent(self, lam_h):
        return (lam_h, None)

    def _cell_vjp(self, tr, t, lam):
        r"""The LSTM backward step: :math:`\bar{\mathbf c} = \bar{\mathbf c}_t + \bar{\mathbf h}_t\odot\mathbf o\odot(1-\tanh^2\mathbf c_t)`,
        gate cotangents, and :math:`\bar{\mathbf c}_{t-1} = \bar{\mathbf c}\odot\mathbf f_t` (the forget gate carries the cell gradient)."""
        i, f, g, o, tc = tr.i[t], tr.f[t], tr.g[t], tr.o[t], tr.tc[t]
        c_prev = tr.c[t]
        lh, lc = lam
        dc = lh * o * (1 - tc * tc)
        if lc is not None:
            dc = dc + lc
        d_i = dc * g * i * (1 - i)
        d_f = dc * c_prev * f * (1 - f)
        d_g = dc * i * (1 - g * g)
        d_o = lh * tc * o * (1 - o)
        shape = np.broadcast_shapes(d_i.shape, d_f.shape, d_g.shape, d_o.shape)
        delta = np.concatenate([np.broadcast_to(v, shape) for v in (d_i, d_f, d_g, d_o)], axis=-1)
        return delta, (None, dc * f)

    def _cell_jvp(self, tr, t, dp, ds):
        H = self.hidden_size
        i, f, g, o, tc = tr.i[t], tr.f[t], tr.g[t], tr.o[t], tr.tc[t]
        di = i * (1 - i) * dp[..., :H]
        df = f * (1 - f) * dp[..., H:2 * H]
        dg = (1 - g * g) * dp[..., 2 * H:3 * H]
        do = o * (1 - o) * dp[..., 3 * H:]
        dc = df * tr.c[t] + di * g + i * dg
        if ds is not None:
            dc = dc + f * ds[1]
        dh = do * tc + o * (1 - tc * tc) * dc
        return (dh, dc)

    def _gate_blocks(self, tr, t):
        """Diagonals of :math:`\\mathbf J_{\\mathbf p_t}\\mathbf c_t`, of the o-gate part of :math:`\\mathbf J_{\\mathbf p_t}\\mathbf h_t`, and :math:`\\mathbf k_t`."""
        i, f, g, o, tc = (v[t, 0] for v in (tr.i, tr.f, tr.g, tr.o, tr.tc))
        c_prev = tr.c[t, 0]
        dcd = [g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)]
        k = o * (1 - tc * tc)
        return dcd, tc * o * (1 - o), k, f

    def _gate_operators(self, tr):
        r""":math:`\mathbf E_t = \mathbf J_{\mathbf p_t}(\mathbf h_t;\mathbf c_t)`, ``2H x 4H`` dense."""
        H = self.hidden_size
        sym = tr.symbolic
        out = []
        for t in range(self.T):
            dcd, ho, k, f = self._gate_blocks(tr, t)
            E = zeros_of((2 * H, 4 * H), sym)
            for j, dv in enumerate(dcd):
                idx = np.arange(H)
                E[H + idx, j * H + idx] = dv
                E[idx, j * H + idx] = k * dv
            E[np.arange(H), 3 * H + np.arange(H)] = ho
            out.append(DenseOp(E))
        return out

    def _step_operators(self, tr, params):
        r""":math:`\mathbf A_t = \mathbf E_t\mathbf W_{hh}\mathbf S + \mathbf C_t`, ``2H x 2H``."""
        H = self.hidden_size
        sym = tr.symbolic
        W_hh = params["W_hh"]
        E = self._gate_operators(tr)
        out = []
        for t in range(self.T):
            _, _, k, f = self._gate_blocks(tr, t)
            A = zeros_of((2 * H, 2 * H), sym)
            A[:, :H] = E[t].M @ W_hh
            idx = np.arange(H)
            A[idx, H + idx] = k * f
            A[H + idx, H + idx] = f
            out.append(DenseOp(A))
        return out

    def _state_selector(self, symbolic):
        H = self.hidden_size
        S = zeros_of((H, 2 * H), symbolic)
        S[np.arange(H), np.arange(H)] = 1
        return DenseOp(S)

    def torch_forward(self, A, params):
        r"""The LSTM recursion with ``torch.sigmoid``, ``torch.tanh``, ``torch.nn.functional.linear`` (float64, batch-first)."""
        import torch
        import torch.nn.functional as F

        N = A.shape[0]
        H = self.hidden_size
        h = A.new_zeros((N, H))
        c = A.new_zeros((N, H))
        b = None
        if self.bias:
            b = params["b_ih"] + params["b_hh"]
        outs = []
        for t in range(self.T):
            p = F.linear(A[:, t], params["W_ih"], b) + F.linear(h, params["W_hh"])
            i, f, g, o = torch.sigmoid(p[:, :H]), torch.sigmoid(p[:, H:2 * H]), torch.tanh(p[:, 2 * H:3 * H]), torch.sigmoid(p[:, 3 * H:])
            c = f * c + i * g
            h = o * torch.tanh(c)
            outs.append(h)
        return h if self.output == "last" else torch.stack(outs, dim=1)

    @classmethod
    def from_torch_module(cls, module, in_shape, output: str = "last") -> tuple[dict, dict[str, np.ndarray]]:
        r"""``(constructor kwargs, canonical local parameters)`` of a ``torch.nn.LSTM`` (one layer, unidirectional, no projection).

        Float64 copies: ``W_ih = weight_ih_l0``, ``W_hh = weight_hh_l0``, ``b_ih = bias_ih_l0``, ``b_hh = bias_hh_l0``
        (gate order i, f, g, o, as torch stores them).

        Raises
        ------
        SpecError
            ``num_layers > 1``, ``bidirectional``, ``proj_size > 0``, or ``in_shape`` not ``(T, input_size)``.
        """
        T, d, H = cls._module_checks(module, in_shape, "LSTM")
        return cls._torch_import(module, d, H, output)

    @classmethod
    def _torch_biases(cls, module) -> dict[str, np.ndarray]:
        return {"b_ih": cls._np(module.bias_ih_l0), "b_hh": cls._np(module.bias_hh_l0)}

    # ------------------------------------------------------------------ LaTeX facts
    def _state_tex(self, t: str) -> str:
        return rf"\mathbf{{s}}_{{{t}}}"

    def _state_jac_tex(self, t: str) -> str:
        return rf"\mathbf{{J}}_{{\mathbf{{s}}_{{{t}-1}}}}\mathbf{{s}}_{{{t}}}"

    def _step_factor_tex(self, Whh: str) -> str:
        return (rf"\mathbf{{J}}_{{\mathbf{{p}}_t}}\mathbf{{s}}_t\,{Whh}\,\mathbf{{S}} + \begin{{bmatrix}}\mathbf{{0}} & "
                r"\operatorname{diag}(\mathbf{k}_t\odot\mathbf{f}_t)\\ \mathbf{0} & \operatorname{diag}(\mathbf{f}_t)\end{bmatrix},"
                r"\qquad \mathbf{k}_t = \mathbf{o}_t\odot(\mathbf{1}-\tanh^2\mathbf{c}_t)")

    def _paragraph_model(self, P, T, d, H) -> str:
        b = (rf" + {P['b_ih']} + {P['b_hh']}" if self.bias else "")
        return (rf"an LSTM unrolled over $T = {T}$ time steps (torch's gate order $\mathbf{{i}},\mathbf{{f}},\mathbf{{g}},\mathbf{{o}}$): "
                rf"with $\mathbf{{h}}_0 = \mathbf{{c}}_0 = \mathbf{{0}}$ and $t = 1,\dots,T$,"
                r"\begin{align*}"
                rf"\mathbf{{p}}_t &= {P['W_ih']}\mathbf{{x}}_t{b} + {P['W_hh']}\mathbf{{h}}_{{t-1}}"
                r" = (\mathbf{p}^i_t;\mathbf{p}^f_t;\mathbf{p}^g_t;\mathbf{p}^o_t)\in\mathbb{R}^{" + str(4 * H) + r"},\\"
                r"\mathbf{i}_t &= \sigma(\mathbf{p}^i_t),\ \mathbf{f}_t = \sigma(\mathbf{p}^f_t),\ "
                r"\mathbf{g}_t = \tanh(\mathbf{p}^g_t),\ \mathbf{o}_t = \sigma(\mathbf{p}^o_t),\\"
                r"\mathbf{c}_t &= \mathbf{f}_t\odot\mathbf{c}_{t-1} + \mathbf{i}_t\odot\mathbf{g}_t,\qquad "
                r"\mathbf{h}_t = \mathbf{o}_t\odot\tanh\mathbf{c}_t."
                r"\end{align*}")

    def _paragraph_tail(self, P) -> str:
        return (r"Here $\mathbf{s}_t = (\mathbf{h}_t;\mathbf{c}_t)$ is the state, $\mathbf{S} = [\mathbf{I}\ \mathbf{0}]$ "
                r"picks $\mathbf{h}$ out of it, and $\mathbf{J}_{\mathbf{p}_t}\mathbf{s}_t$ holds the gate derivatives "
                r"($\mathbf{J}_{\mathbf{p}_t}\mathbf{c}_t = [\operatorname{diag}(\mathbf{g}_t\odot\mathbf{i}_t')\ "
                r"\operatorname{diag}(\mathbf{c}_{t-1}\odot\mathbf{f}_t')\ \operatorname{diag}(\mathbf{i}_t\odot\mathbf{g}_t')\ \mathbf{0}]$, "
                r"$\mathbf{J}_{\mathbf{p}_t}\mathbf{h}_t = \operatorname{diag}(\mathbf{k}_t)\mathbf{J}_{\mathbf{p}_t}\mathbf{c}_t"
                r" + [\mathbf{0}\ \mathbf{0}\ \mathbf{0}\ \operatorname{diag}(\tanh\mathbf{c}_t\odot\mathbf{o}_t')]$, "
                r"primes the gates' derivatives, e.g. $\mathbf{i}' = \mathbf{i}\odot(\mathbf{1}-\mathbf{i})$). "
                r"The cell-state block $\operatorname{diag}(\mathbf{f}_t)$ of the per-step factor is the forget gate: the "
                r"cell cotangent runs back as $\bar{\mathbf{c}}_{t-1} = \bar{\mathbf{c}}_t\odot\mathbf{f}_t$ (plus what reaches "
                r"$\mathbf{c}_{t-1}$ through $\mathbf{h}_{t-1}$), which keeps long products from vanishing.")

    def prose(self) -> str:
        return (r"an LSTM unrolled over time (gates $\mathbf{i},\mathbf{f},\mathbf{g},\mathbf{o}$ in torch's order, "
                r"$\mathbf{c}_t = \mathbf{f}_t\odot\mathbf{c}_{t-1} + \mathbf{i}_t\odot\mathbf{g}_t$, "
                r"$\mathbf{h}_t = \mathbf{o}_t\odot\tanh\mathbf{c}_t$), whose Jacobians are products of the per-step "
                r"state Jacobians $\mathbf{J}_{(\mathbf{h}_{t-1},\mathbf{c}_{t-1})}(\mathbf{h}_t,\mathbf{c}_t)$ summed over the "
                r"time steps (backpropagation through time; the forget gate $\mathbf{f}_t$ carries the cell-state gradient)")

    def latex_forward(self, nt, l, a_prev, weight_layout):
        r""":math:`\mathbf h_T` with the cell and state updates of the LSTM (the gates: :meth:`latex_paragraph`)."""
        return (rf"{self._latex_out(l)},\quad \mathbf{{h}}_t = \mathbf{{o}}_t\odot\tanh\mathbf{{c}}_t,\ "
                rf"\mathbf{{c}}_t = \mathbf{{f}}_t\odot\mathbf{{c}}_{{t-1}} + \mathbf{{i}}_t\odot\mathbf{{g}}_t")

    def latex_input_jacobian(self, params_latex):
        r"""Block :math:`s` of :math:`\mathbf J_{\mathbf x}\mathbf h_T`: :math:`\mathbf S\big(\prod_{t=T}^{s+1}\mathbf A_t\big)\mathbf E_s\mathbf W_{ih}`."""
        Wih = self._subscripted(params_latex.get("W_ih", r"\mathbf{W}_{ih}"))
        A = r"\mathbf{J}_{\mathbf{s}_{u-1}}\mathbf{s}_u"
        top = "T" if self.output == "last" else "t"
        block = rf"\mathbf{{S}}\Big(\textstyle\prod_{{u={top}}}^{{s+1}}{A}\Big)\mathbf{{J}}_{{\mathbf{{p}}_s}}\mathbf{{s}}_s\,{Wih}"
        return self._block_row(block)
