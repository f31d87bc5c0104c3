r"""Vector activations whose Jacobian is not diagonal: softmax and radial sigmoid.

* Softmax (Ganev Ex. 1d): :math:`s_i = e^{z_i}/\sum_j e^{z_j}`,
  :math:`\mathbf J_{\mathbf z}\mathbf s = \operatorname{diag}(\mathbf s) - \mathbf s\mathbf s^\top`.
* Radial sigmoid (Ganev Ex. 1e): :math:`\mathbf f(\mathbf z) = \sigma(|\mathbf z|)\,\mathbf z/|\mathbf z|`
  with :math:`r = |\mathbf z|` the Euclidean norm, :math:`\mathbf u = \mathbf z/r`:
  :math:`\mathbf J = \sigma'(r)\,\mathbf u\mathbf u^\top + \frac{\sigma(r)}{r}(\mathbf I - \mathbf u\mathbf u^\top)`
  (not differentiable at :math:`\mathbf z = 0`, where it is refused).

Numerics: softmax subtracts the largest logit (finite for any finite logits, e.g.
``[1000, 0, -1000]``); the radial sigmoid scales :math:`\mathbf z` by its largest entry
before taking the norm (no overflow for :math:`|z_i| \sim 10^{200}`, no underflow to a
false :math:`r = 0` for :math:`|z_i| \sim 10^{-200}`) and uses
:math:`\sigma'(r) = \sigma(r)\sigma(-r)`.
"""
from __future__ import annotations

import numpy as np
import sympy
from scipy.special import expit

from ..errors import DataError, SpecError
from ..backend.operators import Dense as DenseOp
from .base import Layer
from .registry import register


@register("softmax")
class Softmax(Layer):
    r"""Softmax over the feature axis: :math:`\mathbf J = \operatorname{diag}(\mathbf s)-\mathbf s\mathbf s^\top`."""

    kind = "softmax"
    #: the ``torch.nn`` classes this family imports (:func:`jacobian_bp.uses.torch_import.from_torch`)
    torch_module_types: tuple[str, ...] = ("Softmax",)

    @classmethod
    def from_torch_module(cls, module, in_shape) -> tuple[dict, dict[str, np.ndarray]]:
        """``torch.nn.Softmax(dim=-1)`` (or ``dim=1`` on a flat sample): over the features of each sample."""
        if module.dim not in (-1, 1) or (module.dim == 1 and len(tuple(in_shape)) != 1):
            raise SpecError(f"torch.nn.Softmax(dim={module.dim}): only the feature axis of a flat sample "
                            f"(dim=-1) is supported, input shape per sample {tuple(in_shape)}")
        return {}, {}
    jacobian_symmetric = True
    block_symbol = ("S", r"\operatorname{{diag}}(\mathbf a^{{[{l}]}})-\mathbf a^{{[{l}]}}(\mathbf a^{{[{l}]}})^\top",
                    r"\mathbf{{S}}^{{[{l}]}}")

    def prose(self) -> str:
        return r"softmax, Jacobian $\operatorname{diag}(\mathbf{s})-\mathbf{s}\mathbf{s}^\top$"

    def latex_jacobian(self, out, transpose):
        return rf"\operatorname{{diag}}({out}) - {out}{transpose(out)}"

    def build(self, in_shape, convention=None):
        from ..errors import ShapeError

        if len(tuple(in_shape)) != 1:
            raise ShapeError(f"{self._name()}: expected a flat input vector, received shape {tuple(in_shape)}")
        return super().build(in_shape, convention)

    def forward(self, A, params):
        if isinstance(A, np.ndarray) and A.dtype == object:
            out = np.empty_like(A)
            for i in range(A.shape[0]):
                e = [sympy.exp(v) for v in A[i]]
                tot = sum(e)
                out[i] = [v / tot for v in e]
            return out
        E = np.exp(A - A.max(axis=-1, keepdims=True))
        return E / E.sum(axis=-1, keepdims=True)

    def jacobian_matrix(self, s):
        s = np.asarray(s)
        return np.diag(s) - np.outer(s, s)

    def jac_input(self, a, o, params):
        return DenseOp(self.jacobian_matrix(o))

    def vjp_input(self, A, O, G, params):
        return O * (G - np.sum(G * O, axis=-1, keepdims=True))

    def jvp_input(self, A, O, T, params):
        r""":math:`\dot{\mathbf s} = \mathbf s\odot(\dot{\mathbf z} - (\mathbf s^\top\dot{\mathbf z})\mathbf 1)` (Ganev Ex. 1d)."""
        T = T.reshape(A.shape)
        return O * (T - np.sum(O * T, axis=-1, keepdims=True))

    def torch_forward(self, A, params):
        import torch

        return torch.softmax(A, dim=-1)

    def latex_name(self):
        return r"\operatorname{softmax}"


def _norm(A: np.ndarray) -> np.ndarray:
    """Euclidean norm over the last axis, ``keepdims``, without overflow or underflow of the squares."""
    A = np.asarray(A, dtype=float)
    m = np.max(np.abs(A), axis=-1, keepdims=True)
    safe = np.where(m > 0, m, 1.0)
    return m * np.linalg.norm(A / safe, axis=-1, keepdims=True)


@register("radial_sigmoid")
class RadialSigmoid(Layer):
    r"""Radial sigmoid :math:`\mathbf z \mapsto \sigma(|\mathbf z|)\,\mathbf z/|\mathbf z|` (Ganev Ex. 1e)."""

    kind = "radial_sigmoid"
    block_symbol = ("R", r"\sigma'(r)\mathbf u\mathbf u^\top+\tfrac{{\sigma(r)}}{{r}}(\mathbf I-\mathbf u\mathbf u^\top),"
                         r"\ r=\lvert\mathbf z^{{[{l}]}}\rvert,\ \mathbf u=\mathbf z^{{[{l}]}}/r", r"\mathbf{{R}}^{{[{l}]}}")

    def prose(self) -> str:
        return "radial sigmoid"

    def build(self, in_shape, convention=None):
        from ..errors import ShapeError

        if len(tuple(in_shape)) != 1:
            raise ShapeError(f"{self._name()}: expected a flat input vector, received shape {tuple(in_shape)}")
        return super().build(in_shape, convention)

    def forward(self, A, params):
        if isinstance(A, np.ndarray) and A.dtype == object:  # SymPy entries: exact formula per sample
            out = np.empty_like(A)
            for i in range(A.shape[0]):
                r = self._sympy_norm(A[i])
                s = 1 / (1 + sympy.exp(-r))
                out[i] = [s * v / r for v in A[i]]
            return out
        r = _norm(A)
        if np.any(r == 0):
            raise DataError(f"{self._name()}: radial sigmoid is undefined at z = 0 (|z| = 0)")
        return expit(r) * (A / r)

    def _sympy_norm(self, z) -> sympy.Expr:
        r = sympy.sqrt(sum(v ** 2 for v in np.ravel(z)))
        if r == 0:
            raise DataError(f"{self._name()}: radial sigmoid is not differentiable at z = 0")
        return r

    def jacobian_matrix(self, z):
        if isinstance(z, np.ndarray) and z.dtype == object:  # exact SymPy matrix, same formula
            r = self._sympy_norm(z)
            u = np.array([v / r for v in np.ravel(z)], dtype=object)
            s = 1 / (1 + sympy.exp(-r))
            uu = np.outer(u, u)
            eye = np.eye(u.size, dtype=np.int64).astype(object)
            return s * (1 - s) * uu + (s / r) * (eye - uu)
        z = np.asarray(z, dtype=float).ravel()
        r = float(_norm(z)[0])
        if r == 0:
            raise DataError(f"{self._name()}: radial sigmoid is not differentiable at z = 0")
        u = z / r
        s = expit(r)
        uu = np.outer(u, u)
        return (s * expit(-r)) * uu + (s / r) * (np.eye(z.size) - uu)

    def jac_input(self, a, o, params):
        return DenseOp(self.jacobian_matrix(a))

    def vjp_input(self, A, O, G, params):
        r = _norm(A)
        if np.any(r == 0):
            raise DataError(f"{self._name()}: radial sigmoid is not differentiable at z = 0")
        U = A / r
        s = expit(r)
        gu = np.sum(G * U, axis=-1, keepdims=True)
        return (s * expit(-r)) * gu * U + (s / r) * (G - gu * U)

    def torch_forward(self, A, params):
        import torch

        r = torch.linalg.vector_norm(A, dim=-1, keepdim=True)
        return torch.sigmoid(r) * A / r

    def latex_name(self):
        return r"\operatorname{rsig}"
