r"""Recurrent layers unrolled over time: the shared machinery of :mod:`jacobian_bp.layers.recurrent`.

A recurrent layer (:class:`UnrolledRecurrent`) reads a sequence :math:`\mathbf X\in\mathbb R^{T\times d}` per sample
(row-major flat: :math:`(\mathbf x_1;\dots;\mathbf x_T)`), runs a cell from a zero state and outputs the last hidden
state or all of them.  The cell (Elman, LSTM) supplies its forward step, its backward step
(:math:`\boldsymbol\lambda\mapsto(\mathbf E_t^\top\boldsymbol\lambda, \mathbf C_t^\top\boldsymbol\lambda)`), its forward-mode step
and its per-step operators; everything else -- BPTT batched over samples, forward mode, the unrolled
Jacobians, the per-step contributions to the shared weight's gradient -- is here, once.

Backpropagation through time as a product of Jacobians
------------------------------------------------------
Write :math:`\mathbf s_t` for the state (:math:`\mathbf h_t`, or :math:`(\mathbf h_t;\mathbf c_t)` for the LSTM),
:math:`\mathbf E_t = \mathbf J_{\mathbf p_t}\mathbf s_t` (the gates' local Jacobian) and
:math:`\mathbf C_t = \partial\mathbf s_t/\partial\mathbf s_{t-1}` at fixed :math:`\mathbf p_t`.  The per-step
factor is

.. math::

   \mathbf A_t = \mathbf J_{\mathbf s_{t-1}}\mathbf s_t = \mathbf E_t\,\mathbf W_{hh}\,\mathbf S + \mathbf C_t,

with :math:`\mathbf S = [\mathbf I\ \mathbf 0]` selecting :math:`\mathbf h` from :math:`\mathbf s`.  For the RNN
:math:`\mathbf E_t = \operatorname{diag}(\mathbf 1-\mathbf h_t^{2})`, :math:`\mathbf C_t = \mathbf 0`, so
:math:`\mathbf J_{\mathbf h_{t-1}}\mathbf h_t = \operatorname{diag}(\mathbf 1-\mathbf h_t^{2})\mathbf W_{hh}`.  For the
LSTM (:math:`\mathbf k_t = \mathbf o_t\odot(\mathbf 1-\tanh^2\mathbf c_t)`, primes the gate derivatives
:math:`\mathbf i' = \mathbf i\odot(\mathbf 1-\mathbf i)`, ...):

.. math::

   \mathbf J_{\mathbf p_t}\mathbf c_t = [\operatorname{diag}(\mathbf g\odot\mathbf i')\ \
   \operatorname{diag}(\mathbf c_{t-1}\odot\mathbf f')\ \ \operatorname{diag}(\mathbf i\odot\mathbf g')\ \ \mathbf 0],\quad
   \mathbf J_{\mathbf p_t}\mathbf h_t = \operatorname{diag}(\mathbf k_t)\mathbf J_{\mathbf p_t}\mathbf c_t
   + [\mathbf 0\ \ \mathbf 0\ \ \mathbf 0\ \ \operatorname{diag}(\tanh\mathbf c_t\odot\mathbf o')],

   \mathbf C_t = \begin{bmatrix}\mathbf 0 & \operatorname{diag}(\mathbf k_t\odot\mathbf f_t)\\
   \mathbf 0 & \operatorname{diag}(\mathbf f_t)\end{bmatrix}.

The output Jacobians are sums over time steps of chained blocks (``output="last"``; for ``"all"`` the row
block :math:`t` is the same sum up to :math:`t`):

.. math::

   \mathbf J_{\boldsymbol\theta}\mathbf h_T = \mathbf S\sum_{s=1}^{T}\Big(\prod_{t=T}^{s+1}\mathbf A_t\Big)\mathbf E_s\,
   \mathbf J_{\boldsymbol\theta}\mathbf p_s,\qquad
   \mathbf J_{\operatorname{vec}_r\mathbf W_{hh}}\mathbf p_s = \mathbf I\otimes\mathbf h_{s-1}^\top,\quad
   \mathbf J_{\operatorname{vec}_r\mathbf W_{ih}}\mathbf p_s = \mathbf I\otimes\mathbf x_s^\top,\quad
   \mathbf J_{\mathbf b}\mathbf p_s = \mathbf I,\quad
   \mathbf J_{\mathbf x_s}\mathbf p_s = \mathbf W_{ih}.

The shared weight :math:`\mathbf W_{hh}` is used at every step, so its Jacobian (and gradient) is the sum of
:math:`T` contributions, one per step: :meth:`bptt_contributions` returns them separately.
:class:`UnrolledJacobian` keeps this structure (its :meth:`~UnrolledJacobian.terms` are the chained blocks as
lazy :class:`~jacobian_bp.backend.operators.Product` operators) and applies it with the :math:`O(T)` recursions of
BPTT: rows from the left (reverse mode, ``left_matmat``/``rmatmat``: :math:`\boldsymbol\lambda_{t-1} = \mathbf A_t^\top
\boldsymbol\lambda_t`, with the LSTM's cell-state recursion :math:`\bar{\mathbf c}_{t-1} = \bar{\mathbf c}_t\odot\mathbf f_t`
inside :math:`\mathbf C_t^\top`) and columns from the right (forward mode, ``matmat``).  The batched products
(``vjp_*``, ``jvp_*``, ``left_jac_input``) run the same recursions over the whole batch at once.
"""
from __future__ import annotations

from math import prod

import numpy as np
import sympy
from scipy.special import expit

from ..errors import DataError, ShapeError, SpecError
from ..backend.kernels import blas_limit
from ..backend.operators import Dense as DenseOp, Identity, Kron, Operator, Product
from .base import Layer
from .lazy_operators import RowOperator

__all__ = ["UnrolledRecurrent", "UnrolledJacobian", "Trajectory", "PARAM_LATEX", "tanh_any", "sigmoid_any", "zeros_of"]

_OUTPUTS = ("last", "all")
#: the largest forward pass (bytes) a layer keeps for reuse by the next call on the same batch
_CACHE_BYTES = 64 * 2 ** 20
#: LaTeX of the local parameters (subscripts as in the papers; the engine names them ``W_ih<l>``, ...)
PARAM_LATEX = {"W_ih": r"\mathbf{W}_{ih}", "W_hh": r"\mathbf{W}_{hh}", "b": r"\mathbf{b}",
               "b_ih": r"\mathbf{b}_{ih}", "b_hh": r"\mathbf{b}_{hh}"}


# ---------------------------------------------------------------------- elementwise functions (float or SymPy)
def _is_obj(*arrays) -> bool:
    return any(isinstance(a, np.ndarray) and a.dtype == object for a in arrays)


def tanh_any(x):
    r""":math:`\tanh` entrywise of a float array, or ``sympy.tanh`` of an object array of SymPy expressions."""
    if _is_obj(x):
        return np.vectorize(sympy.tanh, otypes=[object])(x)
    return np.tanh(x)


def sigmoid_any(x):
    r""":math:`\sigma(x) = 1/(1+e^{-x})` entrywise: ``scipy.special.expit`` (floats) or exact SymPy (object arrays)."""
    if _is_obj(x):
        return np.vectorize(lambda t: 1 / (1 + sympy.exp(-t)), otypes=[object])(x)
    return expit(x)


def zeros_of(shape, symbolic: bool):
    """Zeros of ``shape``: float64, or exact integer zeros in an object array (``symbolic``)."""
    return np.zeros(shape, dtype=np.int64).astype(object) if symbolic else np.zeros(shape)


def _eye(n: int, symbolic: bool):
    return np.eye(n, dtype=np.int64).astype(object) if symbolic else np.eye(n)


def _positive_int(v, what: str, who: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
        raise SpecError(f"{who}: {what} must be a positive integer, received {v!r}")
    return int(v)


class Trajectory:
    r"""The forward pass of a recurrent layer over a batch, time first.

    Attributes are arrays of shape ``(T, *B, n)`` (``B`` the batch shape, usually ``(N,)``): ``X`` the
    inputs :math:`\mathbf x_t`, ``h`` the hidden states :math:`\mathbf h_0,\dots,\mathbf h_T` (``T + 1`` entries,
    :math:`\mathbf h_0 = \mathbf 0`); for the LSTM also ``c`` (:math:`\mathbf c_0..\mathbf c_T`), the gates
    ``i, f, g, o`` and ``tc`` :math:`= \tanh\mathbf c_t` (``T`` entries each).
    """

    def __init__(self, symbolic: bool, **arrays):
        self.symbolic = symbolic
        self.names = tuple(arrays)
        for k, v in arrays.items():
            setattr(self, k, v)

    def nbytes(self) -> int:
        return sum(getattr(self, k).nbytes for k in self.names)

    def expand(self, axis: int) -> "Trajectory":
        """A view with a new batch axis inserted at ``axis`` of the batch shape (for ``(N, k)`` row blocks)."""
        return Trajectory(self.symbolic, **{k: np.expand_dims(getattr(self, k), 1 + axis) for k in self.names})


class UnrolledJacobian(RowOperator):
    r"""The Jacobian of a recurrent layer's output w.r.t. its input sequence or one parameter, unrolled over time.

    Mathematically :math:`\mathbf S\sum_{s}\big(\prod_{t=T}^{s+1}\mathbf A_t\big)\mathbf E_s\mathbf J_{w}\mathbf p_s`
    (module docstring; for ``output="all"`` one such sum per row block).  It is applied without forming the
    products: ``left_matmat``/``rmatmat`` run BPTT (reverse mode) on the rows, ``matmat`` the forward-mode
    recursion on the columns; ``to_dense`` picks the cheaper of the two.  :meth:`terms` returns the chained
    blocks themselves as lazy operators (their sum is this operator).

    Parameters
    ----------
    layer : RNN or LSTM
        A built layer.
    traj : Trajectory
        Its forward pass on one sample (batch shape ``(1,)``).
    params : dict
        The layer's local parameters.
    wrt : str
        ``"x"`` (the input sequence) or a local parameter name.
    order : {"C", "F"}
        Vec order of a matrix parameter (row-major ``C``, column-major ``F``).
    """

    structure = "unrolled over time"

    def __init__(self, layer: "UnrolledRecurrent", traj: Trajectory, params: dict, wrt: str, order: str = "C"):
        self.layer, self.traj, self.params, self.wrt, self.order = layer, traj, params, wrt, order
        self.symbolic = traj.symbolic or _is_obj(*(np.asarray(v) for v in params.values()))
        pshape = layer.in_shape if wrt == "x" else layer.param_shapes()[wrt]
        self.wrt_shape = tuple(pshape)
        self.shape = (layer.out_size, prod(pshape))
        self._perm = None
        if order == "F" and wrt != "x" and len(pshape) > 1:
            self._perm = np.arange(self.shape[1]).reshape(pshape).ravel(order="F")

    # ------------------------------------------------------------------ application
    def left_matmat(self, M):
        M = np.asarray(M)
        if M.ndim != 2 or M.shape[1] != self.shape[0]:
            return super().left_matmat(M)
        k = M.shape[0]
        G = M.reshape((k,) + self.layer.out_shape)
        delta = self.layer._bptt(self.traj, G, self.params)  # (T, k, G)
        R = self.layer._cotangent_rows(self.wrt, self.traj, delta, self.params)  # (k, cols), C order
        return R[:, self._perm] if self._perm is not None else R

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        if self._perm is not None:  # column-major vec -> the canonical row-major one
            Xc = np.empty_like(X)
            Xc[self._perm] = X
            X = Xc
        ext = self.layer._ext_tangent_cols(self.wrt, self.traj, X.T, self.params)  # (T, k, G)
        out = self.layer._tangent(self.traj, ext, self.params)  # (k, *out_shape)
        return np.asarray(out).reshape(X.shape[1], -1).T

    def _dense(self):
        rows, cols = self.shape
        if rows <= cols:
            return self.left_matmat(_eye(rows, self.symbolic))
        return self.matmat(_eye(cols, self.symbolic))

    # ------------------------------------------------------------------ structure
    def terms(self, t: int | None = None) -> list[Operator]:
        r"""The chained blocks of output step ``t`` (1-based, default :math:`T`), one per time step :math:`s\le t`:
        :math:`\mathbf S\big(\prod_{u=t}^{s+1}\mathbf A_u\big)\mathbf E_s\mathbf J_w\mathbf p_s` as lazy
        :class:`~jacobian_bp.backend.operators.Product` operators, ``(H, cols)`` each, row-major vec.

        Their sum is row block ``t`` of this operator (all of it for ``output="last"``).
        """
        layer = self.layer
        T = layer.T
        t = T if t is None else int(t)
        if not 1 <= t <= T:
            raise DataError(f"{layer._name()}: time step must be in 1..{T}, received {t}")
        A = layer._step_operators(self.traj, self.params)
        E = layer._gate_operators(self.traj)
        S = layer._state_selector(self.traj.symbolic)
        out = []
        for s in range(1, t + 1):
            chain = [A[u - 1] for u in range(t, s, -1)]
            local = layer._local_operator(self.wrt, self.traj, s, self.params)
            out.append(Product(([S] if S is not None else []) + chain + [E[s - 1], local]))
        return out


class UnrolledRecurrent(Layer):
    r"""The machinery shared by the recurrent layers (module docstring); a subclass defines the cell:

    ``_run`` (the forward loop into a :class:`Trajectory`), ``_zero_cotangent``, ``_cell_vjp`` (one backward step),
    ``_cell_jvp`` (one forward-mode step), ``_gate_operators`` / ``_step_operators`` (:math:`\mathbf E_t`,
    :math:`\mathbf A_t` as operators) and, for a state larger than :math:`\mathbf h`, ``_state_selector``.
    """

    kind = "recurrent"
    parametric = True
    n_gates = 1
    #: the layer's input Jacobian is a whole unrolled chain; renderers name it by block_input_name
    block_input_name = "U"
    param_latex = PARAM_LATEX

    def __init__(self, hidden_size: int, output: str = "last", input_size: int | None = None, bias: bool = True):
        super().__init__()
        who = f"{self.kind} layer"
        self.hidden_size = _positive_int(hidden_size, "hidden_size", who)
        if input_size is not None:
            input_size = _positive_int(input_size, "input_size", who)
        self.input_size = input_size
        if not isinstance(output, str) or output not in _OUTPUTS:
            raise SpecError(f"{who}: output must be 'last' or 'all', received {output!r}")
        self.output = output
        if not isinstance(bias, (bool, np.bool_)):
            raise SpecError(f"{who}: bias must be a boolean (true/false), received {bias!r}")
        self.bias = bool(bias)
        self.param_names = ("W_ih", "W_hh") + (self._bias_names() if self.bias else ())

    def _bias_names(self) -> tuple[str, ...]:
        return ("b",)

    # ------------------------------------------------------------------ shapes and parameters
    @property
    def G(self) -> int:
        """Number of pre-activation rows: :math:`H` (RNN) or :math:`4H` (LSTM)."""
        return self.n_gates * self.hidden_size

    @property
    def T(self) -> int:
        return self.in_shape[0]

    @property
    def d(self) -> int:
        return self.in_shape[1]

    def build(self, in_shape, convention=None):
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) != 2:
            raise ShapeError(f"{self._name()}: expected a sequence of shape (T, d) per sample, received shape {in_shape}")
        if in_shape[0] < 1:
            raise ShapeError(f"{self._name()}: expected a sequence of length T >= 1, received T = {in_shape[0]} "
                             f"(input shape {in_shape})")
        if in_shape[1] < 1:
            raise ShapeError(f"{self._name()}: expected d >= 1 features per time step, received shape {in_shape}")
        if self.input_size is not None and in_shape[1] != self.input_size:
            raise ShapeError(f"{self._name()}: expected input of shape (T, {self.input_size}), received {in_shape}")
        self.in_shape = in_shape
        H = self.hidden_size
        self.out_shape = (H,) if self.output == "last" else (in_shape[0], H)
        return self.out_shape

    def param_shapes(self):
        H, G = self.hidden_size, self.G
        out = {"W_ih": (G, self.d), "W_hh": (G, H)}
        for b in (self._bias_names() if self.bias else ()):
            out[b] = (G,)
        return out

    def init_params(self, rng):
        """torch's initialization: every entry uniform on :math:`[-1/\\sqrt H, 1/\\sqrt H]`."""
        k = 1.0 / np.sqrt(self.hidden_size)
        return {name: rng.uniform(-k, k, shape) for name, shape in self.param_shapes().items()}

    def weight_transposed_by_layout(self, local: str) -> bool:
        """The recurrent weights keep torch's ``(rows, inputs)`` layout under every convention."""
        return False

    def _pre_bias(self, params):
        if not self.bias:
            return 0
        out = 0
        for b in self._bias_names():
            out = out + params[b]
        return out

    # ------------------------------------------------------------------ the forward pass
    def _check_batch(self, A) -> np.ndarray:
        A = np.asarray(A)
        if A.ndim != 3 or tuple(A.shape[1:]) != tuple(self.in_shape):
            raise ShapeError(f"{self._name()}: expected input of shape {self.in_shape} per sample "
                             f"(a batch (N, T, d)), received {A.shape}")
        return A

    def trajectory(self, A, params) -> Trajectory:
        """The forward pass of a batch ``A`` ``(N, T, d)``, every intermediate kept (:class:`Trajectory`).

        The engine asks for the same batch several times in one gradient (forward, ``vjp_params``,
        ``vjp_input``): the last float trajectory is kept with copies of its input and parameters and
        reused only when both are equal entry for entry (an in-place update of either is seen).
        """
        A = self._check_batch(A)
        symbolic = _is_obj(A, *(np.asarray(v) for v in params.values()))
        if symbolic:
            return self._trajectory(A if A.dtype == object else A.astype(object), params, True)
        A = np.asarray(A, dtype=float)
        P = {k: np.asarray(v, dtype=float) for k, v in params.items()}
        hit = self.__dict__.get("_last_trajectory")
        if hit is not None:
            A0, P0, tr = hit
            if (A0.shape == A.shape and set(P0) == set(P) and np.array_equal(A0, A)
                    and all(P0[k].shape == P[k].shape and np.array_equal(P0[k], P[k]) for k in P)):
                return tr
        tr = self._trajectory(A, P, False)
        if tr.nbytes() <= _CACHE_BYTES:
            self._last_trajectory = (A.copy(), {k: v.copy() for k, v in P.items()}, tr)
        else:
            self._last_trajectory = None
        return tr

    def _trajectory(self, A, params, symbolic: bool) -> Trajectory:
        X = np.moveaxis(A, 1, 0)  # (T, N, d)
        # many small products in a time loop: one BLAS thread each (threads only add synchronization there)
        with blas_limit(1):
            pre_x = X @ params["W_ih"].T + self._pre_bias(params)  # (T, N, G)
            return self._run(X, pre_x, params, symbolic)

    def forward(self, A, params):
        tr = self.trajectory(A, params)
        if self.output == "last":
            return tr.h[-1].copy()
        return np.ascontiguousarray(np.moveaxis(tr.h[1:], 0, 1))  # (N, T, H), a copy

    # ------------------------------------------------------------------ BPTT (reverse mode)
    def _bptt(self, tr: Trajectory, G, params) -> np.ndarray:
        """:meth:`_bptt_loop` on one BLAS thread; for the rows of one sample (``left_matmat`` of the
        Jacobians of every parameter with the same left factor) the last result is reused."""
        G = np.asarray(G)
        last = getattr(tr, "_last_rows", None)
        if last is not None and G.dtype != object and last[0].shape == G.shape and np.array_equal(last[0], G):
            return last[1]
        with blas_limit(1):
            delta = self._bptt_loop(tr, G, params)
        if G.dtype != object:
            tr._last_rows = (G.copy(), delta)
        return delta

    def _bptt_loop(self, tr: Trajectory, G, params) -> np.ndarray:
        r"""Backpropagation through time: :math:`\bar{\mathbf p}_t = \mathbf E_t^\top\boldsymbol\lambda_t` for every step,
        ``(T, *B, G)``, from the output cotangent ``G`` (``(*B, H)`` for ``last``, ``(*B, T, H)`` for ``all``).

        :math:`\boldsymbol\lambda_T` is the cotangent of the last state, and
        :math:`\boldsymbol\lambda_{t-1} = \mathbf A_t^\top\boldsymbol\lambda_t` (+ the output cotangent of step
        :math:`t-1` for ``all``), i.e. :math:`\bar{\mathbf h}_{t-1} = \mathbf W_{hh}^\top\bar{\mathbf p}_t + (\mathbf C_t^\top\boldsymbol\lambda_t)_h`.
        """
        G = np.asarray(G)
        T = self.T
        W_hh = params["W_hh"]
        lam_h = G if self.output == "last" else G[..., T - 1, :]
        lam = self._zero_cotangent(lam_h)
        deltas = [None] * T
        for t in range(T - 1, -1, -1):
            d, lam_prev = self._cell_vjp(tr, t, lam)
            deltas[t] = d
            if t:
                lh = d @ W_hh
                if lam_prev[0] is not None:
                    lh = lh + lam_prev[0]
                if self.output == "all":
                    lh = lh + G[..., t - 1, :]
                lam = (lh,) + tuple(lam_prev[1:])
        return np.stack(deltas)

    def _cotangent_rows(self, wrt: str, tr: Trajectory, delta, params) -> np.ndarray:
        """Rows ``(k, cols)`` of ``M J_wrt`` from the step cotangents ``delta`` ``(T, k, G)`` of one sample."""
        k = delta.shape[1]
        if wrt == "x":
            return np.moveaxis(delta @ params["W_ih"], 0, 1).reshape(k, -1)
        if wrt == "W_ih":
            return np.matmul(np.transpose(delta, (1, 2, 0)), tr.X[:, 0, :]).reshape(k, -1)
        if wrt == "W_hh":
            return np.matmul(np.transpose(delta, (1, 2, 0)), tr.h[:-1, 0, :]).reshape(k, -1)
        if wrt in self.param_names:  # a bias
            return delta.sum(axis=0)
        raise DataError(f"{self._name()}: no parameter {wrt!r}; parameters: {', '.join(self.param_names)}")

    def _grads_from_deltas(self, tr: Trajectory, delta, params) -> dict[str, np.ndarray]:
        """Batch-summed parameter gradients from ``delta`` ``(T, N, G)`` (canonical row-major vec)."""
        T, N, G = delta.shape
        D = delta.reshape(T * N, G)
        out = {"W_ih": (D.T @ tr.X.reshape(T * N, -1)).ravel(),
               "W_hh": (D.T @ tr.h[:-1].reshape(T * N, -1)).ravel()}
        if self.bias:
            gb = D.sum(axis=0)
            for b in self._bias_names():
                out[b] = gb
        return out

    def vjp_input(self, A, O, G, params):
        r"""BPTT for the whole batch; rows :math:`(\bar{\mathbf p}_1^\top\mathbf W_{ih},\dots,\bar{\mathbf p}_T^\top\mathbf W_{ih})`, ``(N, T d)``."""
        tr = self.trajectory(A, params)
        N = tr.X.shape[1]
        delta = self._bptt(tr, np.asarray(G).reshape((N,) + self.out_shape), params)
        return np.moveaxis(delta @ params["W_ih"], 0, 1).reshape(N, -1)

    def vjp_params(self, A, O, G, params):
        r"""BPTT for the whole batch: :math:`\nabla\mathbf W_{hh} = \sum_{i,t}\bar{\mathbf p}_{t,i}\mathbf h_{t-1,i}^\top`,
        :math:`\nabla\mathbf W_{ih} = \sum_{i,t}\bar{\mathbf p}_{t,i}\mathbf x_{t,i}^\top`, :math:`\nabla\mathbf b = \sum_{i,t}\bar{\mathbf p}_{t,i}`."""
        tr = self.trajectory(A, params)
        N = tr.X.shape[1]
        delta = self._bptt(tr, np.asarray(G).reshape((N,) + self.out_shape), params)
        return self._grads_from_deltas(tr, delta, params)

    def left_jac_input(self, A, O, P, params):
        r"""Batched :math:`\mathbf P_i\mathbf J_{\mathbf x_i}\mathbf o_i`: BPTT on the ``k`` rows of every sample at once."""
        tr = self.trajectory(A, params).expand(1)  # batch shape (N, 1)
        P = np.asarray(P)
        N, k = P.shape[0], P.shape[1]
        delta = self._bptt(tr, P.reshape((N, k) + self.out_shape), params)  # (T, N, k, G)
        return np.transpose(delta @ params["W_ih"], (1, 2, 0, 3)).reshape(N, k, -1)

    # ------------------------------------------------------------------ forward mode
    def _tangent(self, tr: Trajectory, ext, params):
        with blas_limit(1):
            return self._tangent_loop(tr, ext, params)

    def _tangent_loop(self, tr: Trajectory, ext, params):
        r"""The output tangent from pre-activation tangents ``ext`` ``(T, *B, G)`` entering every step:
        :math:`\dot{\mathbf p}_t = \text{ext}_t + \mathbf W_{hh}\dot{\mathbf h}_{t-1}`,
        :math:`\dot{\mathbf s}_t = \mathbf E_t\dot{\mathbf p}_t + \mathbf C_t\dot{\mathbf s}_{t-1}`."""
        W_hh = params["W_hh"]
        ds = None
        outs = []
        for t in range(self.T):
            dp = ext[t] if ds is None else ext[t] + ds[0] @ W_hh.T
            ds = self._cell_jvp(tr, t, dp, ds)
            outs.append(ds[0])
        if self.output == "last":
            return outs[-1]
        return np.stack(outs, axis=-2)

    def _ext_tangent_cols(self, wrt: str, tr: Trajectory, X, params) -> np.ndarray:
        """``(T, k, G)`` pre-activation tangents of one sample from ``k`` tangent columns ``X`` ``(k, cols)`` of ``wrt``."""
        k = X.shape[0]
        if wrt == "x":
            return np.moveaxis(X.reshape(k, self.T, self.d), 1, 0) @ params["W_ih"].T
        if wrt == "W_ih":
            return np.einsum("kgd,td->tkg", X.reshape(k, self.G, self.d), tr.X[:, 0, :])
        if wrt == "W_hh":
            return np.einsum("kgh,th->tkg", X.reshape(k, self.G, self.hidden_size), tr.h[:-1, 0, :])
        if wrt in self.param_names:
            return np.broadcast_to(X, (self.T, k, self.G))
        raise DataError(f"{self._name()}: no parameter {wrt!r}; parameters: {', '.join(self.param_names)}")

    def jvp_input(self, A, O, T, params):
        tr = self.trajectory(A, params)
        N = tr.X.shape[1]
        Tx = np.moveaxis(np.asarray(T).reshape(N, self.T, self.d), 1, 0)
        return np.asarray(self._tangent(tr, Tx @ params["W_ih"].T, params)).reshape(N, -1)

    def jvp_params(self, A, O, dparams, params):
        tr = self.trajectory(A, params)
        N = tr.X.shape[1]
        ext = tr.X @ np.asarray(dparams["W_ih"]).T + tr.h[:-1] @ np.asarray(dparams["W_hh"]).T
        if self.bias:
            for b in self._bias_names():
                ext = ext + np.asarray(dparams[b])
        return np.asarray(self._tangent(tr, ext, params)).reshape(N, -1)

    # ------------------------------------------------------------------ Jacobians
    def _one(self, a, params) -> Trajectory:
        a = np.asarray(a)
        if tuple(a.shape) != tuple(self.in_shape):
            a = a.reshape(self.in_shape) if a.size == prod(self.in_shape) else a
        return self.trajectory(a[None], params)

    def jac_input(self, a, o, params):
        r""":math:`\mathbf J_{\mathbf x}\mathbf o` (:class:`UnrolledJacobian`): block :math:`s` is
        :math:`\mathbf S\big(\prod_{t=T}^{s+1}\mathbf A_t\big)\mathbf E_s\mathbf W_{ih}`."""
        return UnrolledJacobian(self, self._one(a, params), params, "x")

    def jac_params(self, a, o, params, order="C"):
        r""":math:`\mathbf J_{\theta}\mathbf o` for every local parameter: the sums over time steps of chained blocks."""
        if order not in ("C", "F"):
            raise DataError(f"{self._name()}: vec order must be 'C' or 'F', got {order!r}")
        tr = self._one(a, params)
        return {name: UnrolledJacobian(self, tr, params, name, order) for name in self.param_shapes()}

    # ------------------------------------------------------------------ public BPTT views
    def _as_batch(self, x) -> tuple[np.ndarray, bool]:
        x = np.asarray(x)
        if tuple(x.shape) == tuple(self.in_shape):
            return x[None], True
        return self._check_batch(x), False

    def step_jacobians(self, x, params) -> list[Operator]:
        r"""The per-step factors :math:`\mathbf A_t = \mathbf J_{\mathbf s_{t-1}}\mathbf s_t`, :math:`t = 1..T`, of one sample.

        RNN: :math:`\operatorname{diag}(\mathbf 1-\mathbf h_t^2)\,\mathbf W_{hh}` (``H x H``).  LSTM: the Jacobian of
        the state :math:`(\mathbf h_t;\mathbf c_t)` w.r.t. :math:`(\mathbf h_{t-1};\mathbf c_{t-1})` (``2H x 2H``, module
        docstring).  :math:`\mathbf J_{\mathbf s_s}\mathbf s_T = \mathbf A_T\cdots\mathbf A_{s+1}`.
        """
        x, single = self._as_batch(x)
        if not single:
            raise ShapeError(f"{self._name()}: step_jacobians takes one sample of shape {self.in_shape}, received {x.shape}")
        return self._step_operators(self.trajectory(x, params), params)

    def gate_jacobians(self, x, params) -> list[Operator]:
        r"""The local factors :math:`\mathbf E_t = \mathbf J_{\mathbf p_t}\mathbf s_t` of one sample (``H x H`` / ``2H x 4H``)."""
        x, single = self._as_batch(x)
        if not single:
            raise ShapeError(f"{self._name()}: gate_jacobians takes one sample of shape {self.in_shape}, received {x.shape}")
        return self._gate_operators(self.trajectory(x, params))

    def hidden_jacobian_products(self, x, params) -> list[np.ndarray]:
        r""":math:`\mathbf J_{\mathbf h_{T-k}}\mathbf h_T` for :math:`k = 0..T-1` (dense, ``H x H``; for the LSTM the
        :math:`\mathbf h` block of :math:`\mathbf A_T\cdots\mathbf A_{T-k+1}`, the cell state held fixed at step
        :math:`T-k`): how much of a gradient reaching :math:`\mathbf h_T` flows back :math:`k` steps."""
        A = [op.to_dense() if not op.symbolic else op.to_sympy() for op in self.step_jacobians(x, params)]
        n = A[0].shape[0]
        H = self.hidden_size
        P = np.eye(n)
        out = [P[:H, :H].copy()]
        for t in range(len(A) - 1, 0, -1):
            P = P @ A[t]
            out.append(P[:H, :H].copy())
        return out

    def bptt_contributions(self, x, params, g, wrt: str = "W_hh") -> np.ndarray:
        r"""Each time step's contribution to :math:`\nabla_{\mathbf W_{hh}}` (or to the gradient of ``wrt``), ``(T, *shape)``.

        For the output cotangent ``g`` (one sample: ``out_shape``; a batch: ``(N, *out_shape)``, summed over it),
        contribution :math:`s` is :math:`\bar{\mathbf p}_s\mathbf h_{s-1}^\top` (:math:`\bar{\mathbf p}_s\mathbf x_s^\top` for
        ``W_ih``, :math:`\bar{\mathbf p}_s` for a bias), the transposed chained block of step :math:`s` times ``g``;
        they sum to the gradient (:meth:`vjp_params`).  The first is zero for ``W_hh`` (:math:`\mathbf h_0 = \mathbf 0`).
        """
        X, single = self._as_batch(x)
        N = X.shape[0]
        g = np.asarray(g)
        want = ((N,) if not single else ()) + tuple(self.out_shape)
        if tuple(g.shape) != want:
            raise ShapeError(f"{self._name()}: bptt_contributions expected a cotangent of shape {want}, received {g.shape}")
        if wrt not in self.param_shapes():
            raise DataError(f"{self._name()}: no parameter {wrt!r}; parameters: {', '.join(self.param_names)}")
        tr = self.trajectory(X, params)
        delta = self._bptt(tr, g.reshape((N,) + self.out_shape), params)  # (T, N, G)
        if wrt == "W_ih":
            return np.einsum("tng,tnd->tgd", delta, tr.X)
        if wrt == "W_hh":
            return np.einsum("tng,tnh->tgh", delta, tr.h[:-1])
        return delta.sum(axis=1)

    def unrolled_terms(self, x, params, wrt: str = "W_hh", t: int | None = None) -> list[Operator]:
        r"""The chained blocks :math:`\mathbf S(\prod_{u=t}^{s+1}\mathbf A_u)\mathbf E_s\mathbf J_{w}\mathbf p_s`, :math:`s = 1..t`,
        of one sample as lazy operators (:meth:`UnrolledJacobian.terms`); they sum to row block ``t`` of
        :math:`\mathbf J_w\mathbf o` (row-major vec)."""
        x, single = self._as_batch(x)
        if not single:
            raise ShapeError(f"{self._name()}: unrolled_terms takes one sample of shape {self.in_shape}, received {x.shape}")
        if wrt != "x" and wrt not in self.param_shapes():
            raise DataError(f"{self._name()}: no parameter {wrt!r}; parameters: {', '.join(self.param_names)}")
        return UnrolledJacobian(self, self.trajectory(x, params), params, wrt).terms(t)

    def _local_operator(self, wrt: str, tr: Trajectory, s: int, params) -> Operator:
        r""":math:`\mathbf J_w\mathbf p_s` of step ``s`` (1-based) as an operator (row-major vec)."""
        G = self.G
        sym = tr.symbolic
        if wrt == "x":
            sel = np.zeros((1, self.T), dtype=np.int64)
            sel[0, s - 1] = 1
            return Product([DenseOp(params["W_ih"]), Kron(DenseOp(sel.astype(object) if sym else sel.astype(float)),
                                                           Identity(self.d))])
        if wrt == "W_ih":
            return Kron(Identity(G), DenseOp(tr.X[s - 1, 0][None, :]))
        if wrt == "W_hh":
            return Kron(Identity(G), DenseOp(tr.h[s - 1, 0][None, :]))
        return Identity(G)

    def _state_selector(self, symbolic: bool) -> Operator | None:
        return None
