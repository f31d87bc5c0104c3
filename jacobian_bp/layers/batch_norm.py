r"""Batch normalization in *training* mode: the layer whose Jacobian couples the samples of a batch.

Definition (Ioffe & Szegedy, *Batch Normalization*, ICML 2015, Alg. 1; exactly ``torch.nn.BatchNorm1d(n)`` in
``train()`` mode on a batch ``A`` of shape ``(N, n)``, float64).  For every feature :math:`j` the statistics
are taken over the :math:`N` samples of the batch:

.. math::

   \mu_j = \tfrac1N\sum_{i=1}^N a_{ij},\qquad
   \sigma_j^2 = \tfrac1N\sum_{i=1}^N (a_{ij}-\mu_j)^2\ \ \text{(biased: } 1/N\text{)},\qquad
   s_j = \sqrt{\sigma_j^2+\epsilon},\qquad
   \hat x_{ij} = \frac{a_{ij}-\mu_j}{s_j},\qquad
   o_{ij} = \gamma_j\,\hat x_{ij} + \beta_j .

Running statistics.  torch also updates the buffers ``running_mean`` and ``running_var`` in training mode,
:math:`\mathbf m \leftarrow (1-m)\,\mathbf m + m\,\boldsymbol\mu` and
:math:`\mathbf v \leftarrow (1-m)\,\mathbf v + m\,\tfrac{N}{N-1}\boldsymbol\sigma^2` (momentum :math:`m`, default
0.1; the *unbiased* variance, :math:`1/(N-1)`, goes into the buffer while the biased one normalizes).  They
are not part of the output (nor of any Jacobian here); :meth:`BatchNorm1dTrain.running_statistics` reports
them as torch would compute them.  A network evaluated with those buffers is ``batch_norm_eval``.

The batch Jacobian.  Differentiating :math:`\hat x_{ij}` with respect to :math:`a_{kl}`
(:math:`\partial\mu_j/\partial a_{kj} = 1/N`, :math:`\partial s_j/\partial a_{kj} = \hat x_{kj}/N`):

.. math::

   \frac{\partial o_{ij}}{\partial a_{kl}} = \delta_{jl}\,\frac{\gamma_j}{s_j}
   \Big(\delta_{ik} - \frac1N - \frac1N\,\hat x_{ij}\hat x_{kj}\Big),

so with the batch flattened *sample-major* (row ``i·n + j`` is :math:`o_{ij}`, column ``k·n + l`` is
:math:`a_{kl}`, the layout of :meth:`Network.batch_jacobian_input`) the :math:`Nn\times Nn` Jacobian has the
:math:`n\times n` block

.. math::

   \mathbf J_{\mathbf a_k}\mathbf o_i = \operatorname{diag}\!\Big(\frac{\boldsymbol\gamma}{\mathbf s}\Big)
   \operatorname{diag}\!\Big(\delta_{ik}\mathbf 1 - \tfrac1N\mathbf 1 - \tfrac1N\,\hat{\mathbf x}_i\odot\hat{\mathbf x}_k\Big)

for *every* pair of samples :math:`(i, k)`: it is **not** block-diagonal over the samples (unlike Ganev's
Prop. 4.1 :math:`\Phi` and every other layer of this package), each block is diagonal over the features,
and for each feature the :math:`N\times N` matrix :math:`(\gamma_j/s_j)(\mathbf I - \tfrac1N\mathbf 1\mathbf 1^\top
- \tfrac1N\hat{\mathbf x}_{:j}\hat{\mathbf x}_{:j}^\top)` is the layer-norm Jacobian of the *transposed* batch.
The whole matrix is symmetric.  The parameter Jacobians are the per-sample ones stacked,
:math:`\mathbf J_{\boldsymbol\gamma}\mathbf o_i = \operatorname{diag}(\hat{\mathbf x}_i)`,
:math:`\mathbf J_{\boldsymbol\beta}\mathbf o_i = \mathbf I_n`, but :math:`\hat{\mathbf x}_i` depends on the whole batch.

Backward pass (Ioffe & Szegedy 2015, §3, the chain rule they state; written as in torch's kernel): with
:math:`\mathbf h_i = \boldsymbol\gamma\odot\mathbf g_i` for the cotangents :math:`\mathbf g_i` of :math:`\mathbf o_i`,

.. math::

   \nabla_{\mathbf a_k} = \frac{1}{\mathbf s}\odot\Big(\mathbf h_k - \overline{\mathbf h}
   - \hat{\mathbf x}_k\odot\overline{\mathbf h\odot\hat{\mathbf x}}\Big),\qquad
   \nabla_{\boldsymbol\gamma} = \sum_i \mathbf g_i\odot\hat{\mathbf x}_i,\qquad
   \nabla_{\boldsymbol\beta} = \sum_i\mathbf g_i

(bars: means over the batch).  Dropping the two mean terms (:math:`\nabla_{\mathbf a_k} = \mathbf h_k/\mathbf s`, as
if :math:`\mu`, :math:`\sigma` were constants) is the classic mistake; it is the Jacobian of ``batch_norm_eval``
with the batch statistics frozen.

Protocol.  The class declares ``couples_samples = True``.  The per-sample methods of the layer protocol
(``jac_input``, ``jac_params``, ``left_jac_input``, ``sympy_vector``) are not defined for it and raise
:class:`~jacobian_bp.errors.UnsupportedInputError`; the batched products ``vjp_input``, ``vjp_params``,
``jvp_input``, ``jvp_params`` are the exact products with the *batch* Jacobian, and the batch-level methods
``batch_jac_input``, ``batch_jac_params``, ``batch_left_jac_input`` give it structured.  A batch of one sample
is refused as torch refuses it ("Expected more than 1 value per channel when training"): its variance is 0
and the output would be :math:`\boldsymbol\beta` whatever the input.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import sympy

from ..errors import DataError, ShapeError, UnsupportedInputError
from ..backend.exact import real_number
from ..backend.operators import Diagonal, Identity, Operator, VStack, sympy_scalar
from .normalization import PerFeatureAffine, _is_symbolic
from .registry import register

__all__ = ["BatchNorm1dTrain", "BatchNormCoupling", "COUPLING_HINT"]

#: what to use instead of a per-sample quantity (ends every refusal of a per-sample route)
COUPLING_HINT = ("use the batch quantities instead (gradient, batch_jacobian_theta, batch_jacobian_input; "
                 "their .block(i, k) shows the coupling), or batch_norm_eval for per-sample ones")

class BatchNormCoupling(Operator):
    r"""The batch Jacobian of batch normalization, :math:`Nn\times Nn`, sample-major, kept structured.

    Entry ``(i·n + j, k·n + l)`` is :math:`\delta_{jl}\,c_j\,(\delta_{ik} - \tfrac1N - \tfrac1N\hat x_{ij}\hat x_{kj})`
    with :math:`c_j = \gamma_j/s_j` (module docstring).  It is symmetric; a product with it costs
    :math:`O(Nn)` per vector (two means over the batch), and it has :math:`N^2 n` structural non-zeros.

    Parameters
    ----------
    xhat : ndarray, shape (N, n)
        The normalized batch :math:`\hat{\mathbf X}` (floats or SymPy entries).
    scale : ndarray, shape (n,)
        :math:`\boldsymbol\gamma/\mathbf s` (or :math:`1/\mathbf s` without the affine part).
    """

    structure = "batch coupling (per feature: identity minus rank 2 over the samples)"

    def __init__(self, xhat, scale):
        self.xhat = np.asarray(xhat)
        if self.xhat.ndim != 2:
            raise ShapeError(f"BatchNormCoupling: expected x̂ of shape (N, n), received {self.xhat.shape}")
        self.N, self.n = self.xhat.shape
        self.scale = np.asarray(scale).reshape(self.n)
        self.symbolic = _is_symbolic(self.xhat, self.scale)
        self.shape = (self.N * self.n, self.N * self.n)

    def _apply(self, X3: np.ndarray) -> np.ndarray:
        """``X3`` of shape ``(N, n, k)``: per feature :math:`c_j(\\mathbf I - \\tfrac1N\\mathbf 1\\mathbf 1^\\top - \\tfrac1N\\hat{\\mathbf x}\\hat{\\mathbf x}^\\top)`."""
        xh = self.xhat[:, :, None]
        if self.symbolic or X3.dtype == object:
            inv = sympy.Rational(1, self.N)
            mean = lambda t: t.sum(axis=0, keepdims=True) * inv  # noqa: E731
        else:
            mean = lambda t: t.mean(axis=0, keepdims=True)  # noqa: E731
        return self.scale[None, :, None] * (X3 - mean(X3) - xh * mean(xh * X3))

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        return self._apply(X.reshape(self.N, self.n, -1)).reshape(self.shape[0], -1)

    def rmatmat(self, X):
        return self.matmat(X)  # symmetric

    def left_matmat(self, M):
        M = np.asarray(M)
        if M.ndim != 2 or M.shape[1] != self.shape[0]:
            return super().left_matmat(M)
        return self.matmat(M.T).T

    @property
    def T(self) -> "BatchNormCoupling":
        return self

    @property
    def nnz(self) -> int:
        return self.N * self.N * self.n

    def coupling(self) -> np.ndarray:
        r"""Per feature the :math:`N\times N` matrix :math:`c_j(\mathbf I - \tfrac1N\mathbf 1\mathbf 1^\top - \tfrac1N\hat{\mathbf x}_{:j}\hat{\mathbf x}_{:j}^\top)`, shape ``(n, N, N)``."""
        N = self.N
        xt = self.xhat.T  # (n, N)
        if self.symbolic:
            inv = sympy.Rational(1, N)
            eye = np.eye(N, dtype=np.int64).astype(object)
            C = eye[None] - inv - xt[:, :, None] * xt[:, None, :] * inv
        else:
            C = np.eye(N)[None] - 1.0 / N - xt[:, :, None] * xt[:, None, :] / N
        return self.scale[:, None, None] * C

    def sample_block(self, i: int, k: int) -> Diagonal:
        r""":math:`\mathbf J_{\mathbf a_k}\mathbf o_i`, the diagonal ``n × n`` block of samples ``(i, k)``."""
        for v in (i, k):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or not 0 <= v < self.N:
                raise DataError(f"BatchNormCoupling.sample_block: sample indices must be integers in 0..{self.N - 1}, received {v!r}")
        return Diagonal(self.coupling()[:, i, k])

    def _dense(self):
        N, n = self.N, self.n
        D = np.zeros((N, n, N, n), dtype=object if self.symbolic else float)
        if self.symbolic:
            D[...] = 0
        idx = np.arange(n)
        D[:, idx, :, idx] = self.coupling()  # advanced indices first: (n, N, N) = feature, i, k
        return D.reshape(self.shape)

    def _sparse(self):
        N, n = self.N, self.n
        C = self.coupling()  # (n, N, N): C[j, i, k]
        j, i, k = np.meshgrid(np.arange(n), np.arange(N), np.arange(N), indexing="ij")
        return sp.csr_array((C.ravel().astype(float), ((i * n + j).ravel(), (k * n + j).ravel())), shape=self.shape)

    def _sympy(self):
        D = self._dense()
        return sympy.Matrix(self.shape[0], self.shape[1], [sympy_scalar(v) for v in np.ravel(D).tolist()])


@register("batch_norm")
class BatchNorm1dTrain(PerFeatureAffine):
    r"""Batch normalization in training mode (``torch.nn.BatchNorm1d(n).train()``) on flat vectors; see the module docstring.

    Parameters
    ----------
    eps : float
        :math:`\epsilon > 0`, finite, inside the square root (default ``1e-5``, torch's).
    affine : bool
        Whether the layer has :math:`\boldsymbol\gamma`, :math:`\boldsymbol\beta` (default True).  With them it is
        parametric and opens a stage (``gamma<l>``, ``beta<l>``); without, it acts like an activation.
    momentum : float or None
        torch's momentum of the running statistics (default 0.1; None: cumulative average).  It only
        affects :meth:`running_statistics`, never the output.

    Raises
    ------
    SpecError
        ``eps`` not a finite real number > 0, ``affine`` not a boolean, ``momentum`` not in [0, 1] or None.
    """

    kind = "batch_norm"
    #: the output of a sample depends on every sample of the batch (the engine reads it with getattr)
    couples_samples = True
    #: the batch Jacobian is symmetric (module docstring)
    jacobian_symmetric = True
    torch_module_types = ("BatchNorm1d",)

    def __init__(self, eps: float = 1e-5, affine: bool = True, momentum: float | None = 0.1):
        super().__init__(eps, affine)
        self.momentum = (None if momentum is None else
                         real_number(momentum, f"{self.kind} layer: momentum", minimum=0.0, maximum=1.0))

    # ------------------------------------------------------------------ shapes and parameters
    def build(self, in_shape, convention=None):
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) != 1:
            raise ShapeError(f"{self._name()}: expected a flat input vector (n,) per sample, received shape {in_shape}; "
                             "insert a flatten layer before it (BatchNorm1d over (N, C, L) is not supported)")
        self.in_shape = self.out_shape = in_shape
        return self.out_shape

    @property
    def n(self) -> int:
        return self.in_shape[0]

    # ------------------------------------------------------------------ batch statistics
    def _check_batch(self, A) -> np.ndarray:
        A = np.asarray(A)
        A2 = A.reshape(A.shape[0], -1) if A.ndim else A.reshape(1, -1)
        if A2.shape[0] < 2:
            raise DataError(
                f"{self._name()} (training mode): a batch of N = {A2.shape[0]} sample; the batch variance of every feature "
                "is 0 and the output would not depend on the input. torch raises 'Expected more than 1 value per "
                "channel when training' -- pass N >= 2 samples (the batch statistics couple them) or use batch_norm_eval")
        return A2

    def batch_statistics(self, A) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        r"""``(x̂, s, μ, σ²)`` of a batch ``A`` ``(N, n)``: :math:`\hat{\mathbf X}` ``(N, n)``, :math:`\mathbf s = \sqrt{\boldsymbol\sigma^2+\epsilon}`,
        :math:`\boldsymbol\mu` and the biased :math:`\boldsymbol\sigma^2` (each ``(n,)``).

        Float batches use two passes (mean, then the mean of the squared deviations, as torch); SymPy
        batches (object arrays) the same formula exactly, with :math:`\epsilon` an exact constant.

        Raises
        ------
        DataError
            A batch of one sample (torch's "Expected more than 1 value per channel when training").
        """
        A2 = self._check_batch(A)
        N = A2.shape[0]
        if _is_symbolic(A2):
            inv = sympy.Rational(1, N)
            mu = A2.sum(axis=0) * inv
            C = A2 - mu
            var = (C * C).sum(axis=0) * inv
            s = np.array([sympy.sqrt(v + self.eps_exact) for v in var], dtype=object)
            return C / s, s, mu, var
        A2 = A2.astype(float, copy=False)
        mu = A2.mean(axis=0)
        C = A2 - mu
        var = np.mean(C * C, axis=0)
        s = np.sqrt(var + self.eps)
        return C / s, s, mu, var

    def normalized(self, A) -> np.ndarray:
        r""":math:`\hat{\mathbf X}`, ``(N, n)``."""
        return self.batch_statistics(A)[0]

    def _scale(self, s, params) -> np.ndarray:
        return params["gamma"] / s if self.affine else 1 / s

    def running_statistics(self, A, running_mean=None, running_var=None) -> tuple[np.ndarray, np.ndarray]:
        r"""The buffers torch holds after one training-mode forward pass on ``A`` (they never enter the output).

        :math:`\mathbf m' = (1-m)\,\mathbf m + m\,\boldsymbol\mu`, :math:`\mathbf v' = (1-m)\,\mathbf v + m\,\tfrac{N}{N-1}\boldsymbol\sigma^2`
        (unbiased variance) with the momentum :math:`m`; starting buffers default to torch's :math:`\mathbf 0`, :math:`\mathbf 1`.
        With ``momentum=None`` torch keeps a cumulative average; after its first batch that is :math:`\boldsymbol\mu`
        and the unbiased variance, which is what is returned then.
        """
        _, _, mu, var = self.batch_statistics(np.asarray(A, dtype=float))
        N = np.asarray(A).shape[0]
        unbiased = var * N / (N - 1)
        m0 = np.zeros(self.n) if running_mean is None else np.asarray(running_mean, dtype=float).reshape(self.n)
        v0 = np.ones(self.n) if running_var is None else np.asarray(running_var, dtype=float).reshape(self.n)
        mom = 1.0 if self.momentum is None else self.momentum
        return (1 - mom) * m0 + mom * mu, (1 - mom) * v0 + mom * unbiased

    # ------------------------------------------------------------------ forward and batched products
    def forward(self, A, params):
        r""":math:`o_{ij} = \gamma_j\hat x_{ij}+\beta_j` with the statistics of the batch ``A`` (``N >= 2``)."""
        Xhat = self.normalized(A)
        return Xhat * params["gamma"] + params["beta"] if self.affine else Xhat

    def vjp_input(self, A, O, G, params):
        r"""The *batch* VJP (Ioffe & Szegedy): row ``k`` is :math:`\sum_i(\mathbf J_{\mathbf a_k}\mathbf o_i)^\top\mathbf g_i
        = \tfrac1{\mathbf s}\odot(\mathbf h_k - \overline{\mathbf h} - \hat{\mathbf x}_k\odot\overline{\mathbf h\odot\hat{\mathbf x}})`."""
        Xhat, s, _, _ = self.batch_statistics(A)
        H = np.asarray(G).reshape(Xhat.shape) * (params["gamma"] if self.affine else 1)
        if _is_symbolic(Xhat, H):
            inv = sympy.Rational(1, Xhat.shape[0])
            return (H - H.sum(axis=0) * inv - Xhat * ((H * Xhat).sum(axis=0) * inv)) / s
        return (H - H.mean(axis=0) - Xhat * np.mean(H * Xhat, axis=0)) / s

    def jvp_input(self, A, O, T, params):
        r"""The *batch* JVP: row ``i`` is :math:`\sum_k\mathbf J_{\mathbf a_k}\mathbf o_i\,\mathbf t_k
        = \tfrac{\boldsymbol\gamma}{\mathbf s}\odot(\mathbf t_i - \overline{\mathbf t} - \hat{\mathbf x}_i\odot\overline{\hat{\mathbf x}\odot\mathbf t})`."""
        Xhat, s, _, _ = self.batch_statistics(A)
        T = np.asarray(T).reshape(Xhat.shape)
        return self.batch_jac_input(A, O, params, _stats=(Xhat, s)).matmat(T.reshape(-1, 1)).reshape(Xhat.shape)

    def vjp_params(self, A, O, G, params):
        r""":math:`\nabla_{\boldsymbol\gamma} = \sum_i\mathbf g_i\odot\hat{\mathbf x}_i`, :math:`\nabla_{\boldsymbol\beta} = \sum_i\mathbf g_i`."""
        if not self.affine:
            return {}
        G = np.asarray(G).reshape(np.asarray(A).shape[0], -1)
        return {"gamma": np.sum(G * self.normalized(A), axis=0), "beta": G.sum(axis=0)}

    def jvp_params(self, A, O, dparams, params):
        r""":math:`\dot{\boldsymbol\gamma}\odot\hat{\mathbf x}_i + \dot{\boldsymbol\beta}` for every sample."""
        N = np.asarray(A).shape[0]
        if not self.affine:
            return np.zeros((N, self.out_size))
        return self.normalized(A) * dparams["gamma"] + dparams["beta"]

    # ------------------------------------------------------------------ batch-level Jacobians
    def batch_jac_input(self, A, O, params, _stats=None) -> BatchNormCoupling:
        r""":math:`\mathbf J_{\operatorname{vec}\mathbf A}\operatorname{vec}\mathbf O`, ``(N·n, N·n)``, rows and columns sample-major
        (row ``i·n + j`` is :math:`o_{ij}`, column ``k·n + l`` is :math:`a_{kl}`); a :class:`BatchNormCoupling`."""
        Xhat, s = _stats if _stats is not None else self.batch_statistics(A)[:2]
        return BatchNormCoupling(Xhat, self._scale(s, params))

    def batch_jac_params(self, A, O, params, order: str = "C") -> dict[str, Operator]:
        r""":math:`\mathbf J_{\boldsymbol\gamma}\operatorname{vec}\mathbf O` (the :math:`\operatorname{diag}(\hat{\mathbf x}_i)` stacked) and
        :math:`\mathbf J_{\boldsymbol\beta}\operatorname{vec}\mathbf O` (:math:`\mathbf I_n` stacked), each ``(N·n, n)``, rows sample-major."""
        if order not in ("C", "F"):
            raise DataError(f"{self._name()}: vec order must be 'C' or 'F', got {order!r}")
        if not self.affine:
            return {}
        Xhat = self.normalized(A)
        return {"gamma": VStack([Diagonal(Xhat[i]) for i in range(Xhat.shape[0])]),
                "beta": VStack([Identity(self.n) for _ in range(Xhat.shape[0])])}

    def batch_left_jac_input(self, A, O, P, params) -> np.ndarray:
        r""":math:`\mathbf P\,\mathbf J_{\operatorname{vec}\mathbf A}\operatorname{vec}\mathbf O` for ``P`` of shape ``(k, N·n)`` (sample-major columns); returns ``(k, N·n)``.

        One step of Algorithm 1 at the batch level: each row of ``P``, read as an ``(N, n)`` cotangent, goes
        through the batch VJP (the Jacobian is symmetric)."""
        return self.batch_jac_input(A, O, params).left_matmat(np.asarray(P))

    # ------------------------------------------------------------------ per-sample protocol: not defined
    def _per_sample(self, what: str):
        raise UnsupportedInputError(
            f"{self._name()}.{what}: not defined per sample -- in training mode the batch statistics couple the samples "
            f"(o_i depends on every a_k); use batch_{what} on the whole batch, or batch_norm_eval")

    def jac_input(self, a, o, params):
        self._per_sample("jac_input")

    def jac_params(self, a, o, params, order="C"):
        self._per_sample("jac_params")

    def left_jac_input(self, A, O, P, params):
        self._per_sample("left_jac_input")

    def sympy_vector(self, z):
        raise UnsupportedInputError(f"{self._name()}: no per-sample formula -- the batch statistics couple the samples; "
                                    "use sympy_batch on a whole SymPy batch")

    def sympy_batch(self, Z, params=None) -> sympy.Matrix:
        r"""The defining formula on a SymPy batch ``Z`` (``N × n`` SymPy matrix or nested list), exact :math:`\epsilon`.

        ``params`` maps ``gamma``/``beta`` to entries; an affine layer without them uses the real symbols
        :math:`\gamma_j`, :math:`\beta_j`.  ``Matrix.jacobian`` of its vec is the batch Jacobian (an oracle).
        """
        Z = sympy.Matrix(Z)
        A = np.array(Z.tolist(), dtype=object)
        if self.affine and params is None:
            n = A.shape[1]
            params = {"gamma": np.array(sympy.symbols(f"gamma_1:{n + 1}", real=True), dtype=object),
                      "beta": np.array(sympy.symbols(f"beta_1:{n + 1}", real=True), dtype=object)}
        return sympy.Matrix(self.forward(A, params or {}).tolist())

    @classmethod
    def protocol_examples(cls):
        """None: the per-sample protocol does not apply (the samples are coupled); see :meth:`batch_protocol_examples`."""
        return []

    @classmethod
    def batch_protocol_examples(cls) -> list[tuple[dict, tuple[int, ...], int]]:
        """``(kwargs, per-sample shape, batch size N)`` instances for the batch-level protocol tests."""
        return [({}, (4,), 5), ({"eps": 0.5}, (3,), 2), ({"affine": False}, (5,), 3)]

    # ------------------------------------------------------------------ torch
    def torch_forward(self, A, params):
        """``torch.nn.functional.batch_norm(..., training=True)`` without running buffers (batch statistics)."""
        import torch

        return torch.nn.functional.batch_norm(A, None, None, params.get("gamma"), params.get("beta"),
                                              training=True, momentum=0.0, eps=self.eps)

    @classmethod
    def from_torch_module(cls, module, in_shape) -> tuple[dict, dict[str, np.ndarray]]:
        """``(kwargs, canonical float64 params)`` of a ``torch.nn.BatchNorm1d`` that normalizes with batch statistics.

        torch uses the batch statistics when ``module.training`` or when it tracks no running statistics
        (``track_running_stats=False``); otherwise (``eval()`` with buffers) the module is ``batch_norm_eval``
        with its ``running_mean``/``running_var``, which this class refuses to stand for.

        Raises
        ------
        UnsupportedInputError
            Not a BatchNorm1d, or one in eval mode with running statistics.
        ShapeError
            An input that is not a flat ``(num_features,)`` vector per sample.
        """
        if type(module).__name__ not in cls.torch_module_types:
            raise UnsupportedInputError(f"batch_norm: expected a torch.nn.BatchNorm1d, received {type(module).__name__}")
        if not module.training and module.track_running_stats:
            raise UnsupportedInputError("batch_norm: the BatchNorm1d is in eval() mode with running statistics; "
                                        "that is the layer batch_norm_eval (running_mean, running_var), not batch_norm")
        in_shape = tuple(int(s) for s in ((in_shape,) if isinstance(in_shape, (int, np.integer)) else in_shape))
        if in_shape != (int(module.num_features),):
            raise ShapeError(f"batch_norm: expected a flat input ({int(module.num_features)},) per sample for "
                             f"BatchNorm1d({int(module.num_features)}), received {in_shape}")
        kwargs = {"eps": float(module.eps), "affine": bool(module.affine),
                  "momentum": None if module.momentum is None else float(module.momentum)}
        params = {}
        if module.affine:
            params = {"gamma": module.weight.detach().cpu().double().numpy().copy(),
                      "beta": module.bias.detach().cpu().double().numpy().copy()}
        return kwargs, params

    # ------------------------------------------------------------------ LaTeX facts
    def prose(self) -> str:
        return (r"batch normalization in training mode, $\boldsymbol{\gamma}\odot(\mathbf{a}_i-\boldsymbol{\mu}_B)\oslash"
                r"\sqrt{\boldsymbol{\sigma}_B^2+\epsilon}+\boldsymbol{\beta}$ with the mean $\boldsymbol{\mu}_B$ and the biased "
                r"variance $\boldsymbol{\sigma}_B^2$ of the current batch, so that every output $\mathbf{o}_i$ depends on "
                r"every input $\mathbf{a}_k$: its batch Jacobian couples the samples, with the diagonal blocks "
                r"$\mathbf{J}_{\mathbf{a}_k}\mathbf{o}_i = \operatorname{diag}(\boldsymbol{\gamma}\oslash\mathbf{s})"
                r"\operatorname{diag}(\delta_{ik}\mathbf{1}-\tfrac{1}{N}\mathbf{1}-\tfrac{1}{N}\hat{\mathbf{x}}_i\odot\hat{\mathbf{x}}_k)$ "
                r"for every pair of samples, $\mathbf{s}=\sqrt{\boldsymbol{\sigma}_B^2+\epsilon}$")

    def latex_describe(self) -> str:
        return (rf"batch norm (training: batch statistics) over ${self.n}$ features, $\epsilon = {self.latex_eps()}$"
                + ("" if self.affine else ", no affine"))

    def latex_name(self) -> str:
        return r"\operatorname{BN}_B"

    def latex_forward(self, nt, l, a_prev, weight_layout):
        r""":math:`\boldsymbol\gamma^{[l]}\odot\frac{\mathbf a-\boldsymbol\mu_B}{\sqrt{\boldsymbol\sigma_B^2+\epsilon}}+\boldsymbol\beta^{[l]}`
        (``B``: the batch; the division is elementwise)."""
        core = rf"\frac{{{a_prev} - \boldsymbol{{\mu}}_B}}{{\sqrt{{\boldsymbol{{\sigma}}_B^2 + \epsilon}}}}"
        if not self.affine:
            return core
        g, b = ((nt.param("gamma", l, self), nt.param("beta", l, self)) if nt is not None
                else (self.latex_param("gamma", l), self.latex_param("beta", l)))
        return rf"{g} \odot {core} + {b}"

    def latex_statistics(self) -> str:
        r""":math:`\boldsymbol\mu_B = \tfrac1N\sum_i\mathbf a_i`, :math:`\boldsymbol\sigma_B^2 = \tfrac1N\sum_i(\mathbf a_i-\boldsymbol\mu_B)^{\odot 2}` (display math)."""
        return (r"\boldsymbol{\mu}_B = \frac{1}{N}\sum_{i=1}^{N}\mathbf{a}_i,\qquad "
                r"\boldsymbol{\sigma}_B^2 = \frac{1}{N}\sum_{i=1}^{N}(\mathbf{a}_i-\boldsymbol{\mu}_B)^{\odot 2},\qquad "
                r"\hat{\mathbf{x}}_i = (\mathbf{a}_i-\boldsymbol{\mu}_B)\oslash\mathbf{s},\quad "
                r"\mathbf{s} = \sqrt{\boldsymbol{\sigma}_B^2+\epsilon}")

    def latex_batch_jacobian_block(self, params_latex: dict[str, str] | None = None) -> str:
        r"""The block :math:`\mathbf J_{\mathbf a_k}\mathbf o_i` for samples ``i``, ``k`` (display math)."""
        g = (params_latex or {}).get("gamma", self.param_latex["gamma"] if self.affine else None)
        scale = rf"\operatorname{{diag}}({g}\oslash\mathbf{{s}})" if g else r"\operatorname{diag}(\mathbf{1}\oslash\mathbf{s})"
        return (rf"\mathbf{{J}}_{{\mathbf{{a}}_k}}\mathbf{{o}}_i = {scale}\,\operatorname{{diag}}\Big(\delta_{{ik}}\mathbf{{1}}"
                r" - \tfrac{1}{N}\mathbf{1} - \tfrac{1}{N}\hat{\mathbf{x}}_i\odot\hat{\mathbf{x}}_k\Big)")

    def latex_batch_jacobian(self) -> str:
        r"""The whole batch Jacobian as a sum over sample pairs, :math:`\sum_{i,k}\mathbf E_{ik}\otimes\mathbf J_{\mathbf a_k}\mathbf o_i` (display math)."""
        return (r"\mathbf{J}_{\operatorname{vec}\mathbf{A}}\operatorname{vec}\mathbf{O} = \sum_{i=1}^{N}\sum_{k=1}^{N}"
                r"\mathbf{E}_{ik}\otimes\mathbf{J}_{\mathbf{a}_k}\mathbf{o}_i \in \mathbb{R}^{Nn\times Nn}")

    def block_param_jacobian(self, alg, local, order):
        return None

    def block_param_gradient(self, alg, local, order, delta):
        return None

    def describe(self):
        return f"batch_norm {self.in_shape[0] if self.in_shape else '?'} eps={self.eps:g}" + ("" if self.affine else " no-affine")
