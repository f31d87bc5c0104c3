r"""Elementwise activations :math:`\mathbf a = \mathbf f(\mathbf z)`, :math:`a_i = f(z_i)`.

Their Jacobian is diagonal (Damadi §3.4):

.. math:: \mathbf J_{\mathbf z}\mathbf f(\mathbf z) = \operatorname{diag}(f'(z_1),\dots,f'(z_n)).

Each activation carries a NumPy implementation of :math:`f` and :math:`f'` (stable
forms) and a SymPy expression of :math:`f` (:meth:`ElementwiseActivation.sympy_f`),
from which the symbolic backend derives :math:`f'` exactly.  The tests check that the
two agree.  ReLU's derivative at 0 is a *stated* choice (``at_zero``), taken from the
convention when not given: Park §3 uses 1, PyTorch uses 0.

Numeric constructor arguments (``at_zero``, ``negative_slope``, ``alpha``) are validated
when the layer is made (:func:`jacobian_bp.backend.exact.real_number`: finite real numbers, never
strings, booleans or complex numbers) and turned into SymPy constants by
:func:`jacobian_bp.backend.exact.exact_number`, which never parses text.

Derivatives are computed in forms that keep their *relative* accuracy in the tails,
where the textbook forms cancel to 0: :math:`\sigma'(z) = \sigma(z)\sigma(-z)`,
:math:`\tanh'(z) = 4e^{-2|z|}/(1+e^{-2|z|})^2`, :math:`\arctan'(z) = w^2/(1+w^2)` with
:math:`w = 1/z` for :math:`|z|>1`.
"""
from __future__ import annotations

import numpy as np
import sympy
from scipy.special import erfc, erfcx, expit

from ..errors import SpecError, UnsupportedInputError
from ..backend.exact import exact_number, real_number
from ..backend.operators import Diagonal
from .base import Layer
from .registry import register

#: the point at which :meth:`ElementwiseActivation.sympy_df` differentiates :meth:`sympy_f` once
_DF_POINT = sympy.Dummy("s", real=True)


class ElementwiseActivation(Layer):
    """Base class of elementwise activations; subclasses define ``f``, ``df`` and ``sympy_f``."""

    elementwise = True
    jacobian_symmetric = True  # diagonal
    symbol = "f"  # LaTeX name of the function

    def f(self, z: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def df(self, z: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def sympy_f(self, t: sympy.Expr) -> sympy.Expr:  # pragma: no cover
        raise NotImplementedError

    def sympy_df(self, t: sympy.Expr) -> sympy.Expr:
        """Exact derivative :math:`f'(t)`; defaults to differentiating :meth:`sympy_f`.

        The derivative is formed once per activation object at a dummy point and then
        evaluated at ``t`` (``xreplace``), so that applying it to every entry of a layer
        costs one substitution per entry instead of one differentiation.
        """
        cached = self.__dict__.get("_sympy_df_at_dummy")
        if cached is None:
            cached = sympy.diff(self.sympy_f(_DF_POINT), _DF_POINT)
            self._sympy_df_at_dummy = cached
        return cached.xreplace({_DF_POINT: t})

    def forward(self, A, params):
        if isinstance(A, np.ndarray) and A.dtype == object:
            return np.vectorize(self.sympy_f, otypes=[object])(A)
        return self.f(A)

    def derivative(self, z):
        if isinstance(z, np.ndarray) and z.dtype == object:
            return np.vectorize(self.sympy_df, otypes=[object])(z)
        return self.df(z)

    def jac_input(self, a, o, params):
        return Diagonal(np.ravel(self.derivative(np.asarray(a))))

    def vjp_input(self, A, O, G, params):
        return G * self.derivative(A).reshape(G.shape)

    def left_jac_input(self, A, O, P, params):
        return P * self.derivative(A).reshape(P.shape[0], 1, -1)

    @classmethod
    def protocol_examples(cls):
        return [({}, (5,)), ({}, (2, 3, 3))]  # elementwise: any per-sample shape

    def jvp_input(self, A, O, T, params):
        r""":math:`\dot{\mathbf a} = f'(\mathbf z)\odot\dot{\mathbf z}` (Damadi §3.4)."""
        T = T.reshape(A.shape)
        return T * self.derivative(A)

    def torch_forward(self, A, params):
        """:meth:`torch_f` applied entrywise (the batch shape is kept)."""
        return self.torch_f(A)

    def torch_f(self, z):
        """The activation in torch (float64 tensor ``z``); subclasses with a torch equivalent override it."""
        raise NotImplementedError(f"no torch equivalent for layer {self.kind!r} ({type(self).__name__})")

    #: the ``torch.nn`` classes this family imports (:func:`jacobian_bp.uses.torch_import.from_torch`)
    torch_module_types: tuple[str, ...] = ()

    @classmethod
    def from_torch_module(cls, module, in_shape) -> tuple[dict, dict[str, np.ndarray]]:
        """A parameter-free ``torch.nn`` activation → (constructor kwargs, no parameters); default: no kwargs."""
        return {}, {}

    def latex_name(self) -> str:
        return self.symbol

    #: the derivation's phrase for this activation (LaTeX text mode); empty: its kind
    latex_prose: str = ""

    def prose(self) -> str:
        return self.latex_prose or super().prose()


@register("identity")
class IdentityActivation(ElementwiseActivation):
    r""":math:`f(z) = z`, :math:`f'(z) = 1` (regression output, Damadi Table 1)."""

    kind = "identity"
    torch_module_types = ("Identity", "Dropout")

    @classmethod
    def from_torch_module(cls, module, in_shape):
        """``torch.nn.Identity``; ``torch.nn.Dropout`` only in eval mode (or ``p=0``), where it is the identity."""
        if type(module).__name__ == "Dropout" and module.training and module.p > 0:
            raise SpecError(f"torch.nn.Dropout(p={module.p}) in training mode is random; call module.eval() first")
        return {}, {}
    symbol = r"\operatorname{id}"
    jacobian_is_identity = True
    latex_prose = "the identity"

    def f(self, z):
        return np.asarray(z, dtype=float).copy()

    def df(self, z):
        return np.ones_like(z, dtype=float)

    def torch_f(self, z):
        return z

    def sympy_f(self, t):
        return t

    def sympy_df(self, t):
        return sympy.Integer(1)


@register("relu")
class ReLU(ElementwiseActivation):
    r""":math:`f(z)=\max(0,z)`, :math:`f'(z) = [z>0]`, and :math:`f'(0)=` ``at_zero``.

    Parameters
    ----------
    at_zero : float, optional
        The subgradient used at :math:`z=0`, a real number in :math:`[0, 1]` (the
        subdifferential of :math:`\max(0, z)` at 0): 0 as in PyTorch, 1 as in Park §3.
        When omitted it is taken from the network's convention (``relu_at_zero``) each
        time the layer is built; reading :attr:`at_zero` then gives the value in use.

    Raises
    ------
    SpecError
        If ``at_zero`` is not a finite real number in [0, 1] (strings are refused).
    """

    kind = "relu"
    torch_module_types = ("ReLU",)
    symbol = r"\operatorname{relu}"

    def __init__(self, at_zero: float | None = None):
        super().__init__()
        self._at_zero_stated: float | None = None
        self._at_zero_convention: float | None = None
        self.at_zero = at_zero

    @property
    def at_zero(self) -> float | None:
        """:math:`f'(0)` in use: the stated value, else the convention's (after ``build``), else None."""
        return self._at_zero_stated if self._at_zero_stated is not None else self._at_zero_convention

    @at_zero.setter
    def at_zero(self, value: float | None) -> None:
        self._at_zero_stated = None if value is None else real_number(
            value, f"{self._name()}: at_zero", minimum=0.0, maximum=1.0)

    @property
    def at_zero_stated(self) -> float | None:
        """The value given by the user (None: follow the convention)."""
        return self._at_zero_stated

    def build(self, in_shape, convention=None):
        # the convention's value is kept apart from the stated one, so that building the
        # layer again (another network, another convention) re-resolves it
        if convention is not None and hasattr(convention, "relu_at_zero"):
            self._at_zero_convention = real_number(
                convention.relu_at_zero, f"{self._name()}: convention {getattr(convention, 'name', '')!r} relu_at_zero",
                minimum=0.0, maximum=1.0)
        else:
            self._at_zero_convention = 0.0
        return super().build(in_shape, convention)

    #: ReLU'(0) comes from the convention when not stated (the derivation states the convention's value)
    follows_convention_at_zero = True

    def prose(self) -> str:
        return r"ReLU $\max(0,t)$, with derivative $[t>0]$ and the subgradient %s at $0$" % f"${getattr(self, 'at_zero', 0) or 0:g}$"

    def _h0(self) -> float:
        h0 = self.at_zero
        return 0.0 if h0 is None else h0

    def f(self, z):
        return np.maximum(z, 0.0)

    def df(self, z):
        d = np.array(z > 0, dtype=float)
        h0 = self._h0()
        if h0 != 0.0:
            np.putmask(d, np.asarray(z) == 0, h0)
        return d

    def vjp_input(self, A, O, G, params):
        r""":math:`\mathbf g\odot[\mathbf z>0]` (plus ``at_zero`` where :math:`z=0`), row by row.

        With :math:`f'(0)=0` and float arrays the mask multiplies ``G`` directly (a boolean is read as
        0.0/1.0, so the products are bit for bit those of ``G * df(z)``), without forming ``df(z)``."""
        if (type(A) is np.ndarray and type(G) is np.ndarray and A.dtype == np.float64 and G.dtype == np.float64
                and G.size == A.size and self._h0() == 0.0):
            return np.multiply(G, np.greater(A, 0.0).reshape(G.shape))
        return super().vjp_input(A, O, G, params)

    def left_jac_input(self, A, O, P, params):
        r""":math:`\mathbf P\,\operatorname{diag}[\mathbf z>0]` per sample (the mask read as 0.0/1.0, as in :meth:`vjp_input`)."""
        if (type(A) is np.ndarray and type(P) is np.ndarray and A.dtype == np.float64 and P.dtype == np.float64
                and self._h0() == 0.0):
            return np.multiply(P, np.greater(A, 0.0).reshape(P.shape[0], 1, -1))
        return super().left_jac_input(A, O, P, params)

    def torch_f(self, z):
        import torch

        return torch.nn.functional.relu(z)

    def sympy_f(self, t):
        return t * sympy.Heaviside(t, exact_number(self._h0(), f"{self._name()}: at_zero"))

    def sympy_df(self, t):
        return sympy.Heaviside(t, exact_number(self._h0(), f"{self._name()}: at_zero"))


@register("leaky_relu")
class LeakyReLU(ElementwiseActivation):
    r""":math:`f(z) = z` for :math:`z>0`, :math:`\alpha z` otherwise; :math:`f'(0)=\alpha` unless ``at_zero``.

    Parameters
    ----------
    negative_slope : float
        :math:`\alpha`, a finite real number (default 0.01).
    at_zero : float, optional
        :math:`f'(0)`, a real number between :math:`\alpha` and 1 (inclusive): the
        one-sided derivatives' convex hull, i.e. the Clarke subdifferential at 0.  When
        omitted, :math:`\alpha` is used (as PyTorch does).

    Raises
    ------
    SpecError
        If a value is not a finite real number (strings are refused) or ``at_zero`` lies
        outside :math:`[\min(\alpha,1), \max(\alpha,1)]`.
    """

    kind = "leaky_relu"
    torch_module_types = ("LeakyReLU",)

    @classmethod
    def from_torch_module(cls, module, in_shape):
        """``torch.nn.LeakyReLU(negative_slope)``; f'(0) = negative_slope, as in torch."""
        return {"negative_slope": float(module.negative_slope)}, {}
    symbol = r"\operatorname{lrelu}"
    latex_prose = "leaky ReLU"
    is_kinked = True

    def __init__(self, negative_slope: float = 0.01, at_zero: float | None = None):
        super().__init__()
        self.negative_slope = real_number(negative_slope, "leaky_relu: negative_slope")
        lo, hi = min(self.negative_slope, 1.0), max(self.negative_slope, 1.0)
        self.at_zero = None if at_zero is None else real_number(
            at_zero, "leaky_relu: at_zero (between negative_slope and 1)", minimum=lo, maximum=hi)

    def f(self, z):
        return np.where(z > 0, z, self.negative_slope * z)

    def df(self, z):
        h0 = self.negative_slope if self.at_zero is None else self.at_zero
        return np.where(z > 0, 1.0, np.where(z < 0, self.negative_slope, h0))

    def torch_f(self, z):
        import torch

        return torch.nn.functional.leaky_relu(z, self.negative_slope)

    def sympy_f(self, t):
        a = exact_number(self.negative_slope, f"{self._name()}: negative_slope")
        return sympy.Piecewise((t, t > 0), (a * t, True))

    def sympy_df(self, t):
        a = exact_number(self.negative_slope, f"{self._name()}: negative_slope")
        h0 = a if self.at_zero is None else exact_number(self.at_zero, f"{self._name()}: at_zero")
        return sympy.Piecewise((1, t > 0), (a, t < 0), (h0, True))


@register("sigmoid")
class Sigmoid(ElementwiseActivation):
    r""":math:`\sigma(z) = 1/(1+e^{-z})`, :math:`\sigma'(z) = \sigma(z)(1-\sigma(z))` (Ganev Ex. 1a).

    The derivative is computed as :math:`\sigma(z)\,\sigma(-z)`, which keeps its relative
    accuracy for large :math:`z` (where :math:`1-\sigma(z)` rounds to 0).
    """

    kind = "sigmoid"
    torch_module_types = ("Sigmoid",)
    symbol = r"\sigma"
    latex_prose = r"the sigmoid $\sigma(t) = 1/(1+e^{-t})$, $\sigma' = \sigma(1-\sigma)$"

    def f(self, z):
        return expit(z)

    def df(self, z):
        return expit(z) * expit(np.negative(z))

    def torch_f(self, z):
        import torch

        return torch.sigmoid(z)

    def sympy_f(self, t):
        return 1 / (1 + sympy.exp(-t))


@register("tanh")
class Tanh(ElementwiseActivation):
    r""":math:`\tanh z`, derivative :math:`1-\tanh^2 z`.

    The derivative is computed as :math:`4e^{-2|z|}/(1+e^{-2|z|})^2` (equal to
    :math:`\operatorname{sech}^2 z`), which keeps its relative accuracy in the tails where
    :math:`1-\tanh^2 z` rounds to 0 (already at :math:`|z| = 19`).
    """

    kind = "tanh"
    torch_module_types = ("Tanh",)
    symbol = r"\tanh"
    latex_prose = r"$\tanh$, derivative $1-\tanh^2$"

    def f(self, z):
        return np.tanh(z)

    def df(self, z):
        e = np.exp(-2.0 * np.abs(z))
        return 4.0 * e / np.square(1.0 + e)

    def torch_f(self, z):
        import torch

        return torch.tanh(z)

    def sympy_f(self, t):
        return sympy.tanh(t)


@register("arctan")
class Arctan(ElementwiseActivation):
    r""":math:`\arctan z`, derivative :math:`1/(1+z^2)` (Ganev Ex. 1c).

    For :math:`|z| > 1` the derivative is computed as :math:`w^2/(1+w^2)` with
    :math:`w = 1/z`, so that :math:`z^2` never overflows.
    """

    kind = "arctan"
    symbol = r"\arctan"
    latex_prose = r"$\arctan$, derivative $1/(1+t^2)$"

    def f(self, z):
        return np.arctan(z)

    def df(self, z):
        z = np.asarray(z, dtype=float)
        big = np.abs(z) > 1.0
        w = np.divide(1.0, z, out=np.zeros_like(z), where=big)
        w2 = np.square(w)
        return np.where(big, w2 / (1.0 + w2), 1.0 / (1.0 + np.square(np.where(big, 0.0, z))))

    def torch_f(self, z):
        import torch

        return torch.atan(z)

    def sympy_f(self, t):
        return sympy.atan(t)


@register("softplus")
class Softplus(ElementwiseActivation):
    r""":math:`\log(1+e^{z})` (computed as ``logaddexp(0, z)``), derivative :math:`\sigma(z)`."""

    kind = "softplus"
    torch_module_types = ("Softplus",)

    @classmethod
    def from_torch_module(cls, module, in_shape):
        r"""``torch.nn.Softplus()`` with ``beta=1``.  torch returns ``z`` itself above ``threshold`` (20): there the
        two differ by at most :math:`\log(1+e^{-20}) \approx 2\cdot10^{-9}` (derivative :math:`\sigma(z)` vs 1)."""
        if float(module.beta) != 1.0:
            raise SpecError(f"torch.nn.Softplus(beta={module.beta}): only beta=1 is supported")
        return {}, {}
    symbol = r"\operatorname{softplus}"
    latex_prose = r"softplus $\log(1+e^t)$, derivative $\sigma$"

    def f(self, z):
        return np.logaddexp(0.0, z)

    def df(self, z):
        return expit(z)

    def torch_f(self, z):
        import torch

        return torch.nn.functional.softplus(z)

    def sympy_f(self, t):
        return sympy.log(1 + sympy.exp(t))


@register("elu")
class ELU(ElementwiseActivation):
    r""":math:`z` for :math:`z>0`, :math:`\alpha(e^{z}-1)` otherwise; derivative 1 or :math:`\alpha e^{z}`.

    At :math:`z=0` the derivative is 1 when :math:`\alpha = 1` (ELU is then :math:`C^1`); for
    other :math:`\alpha` the left derivative :math:`\alpha` is used, as PyTorch does.

    Parameters
    ----------
    alpha : float
        :math:`\alpha`, a finite real number > 0 (default 1); strings are refused (``SpecError``).
    """

    kind = "elu"
    torch_module_types = ("ELU",)

    @classmethod
    def from_torch_module(cls, module, in_shape):
        """``torch.nn.ELU(alpha)``."""
        return {"alpha": float(module.alpha)}, {}
    symbol = r"\operatorname{elu}"
    latex_prose = "ELU"
    is_kinked = True

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = real_number(alpha, "elu: alpha", minimum=0.0, strict_minimum=True)

    def f(self, z):
        return np.where(z > 0, z, self.alpha * np.expm1(np.minimum(z, 0.0)))

    def df(self, z):
        return np.where(z > 0, 1.0, self.alpha * np.exp(np.minimum(z, 0.0)))

    def torch_f(self, z):
        import torch

        return torch.nn.functional.elu(z, self.alpha)

    def sympy_f(self, t):
        a = exact_number(self.alpha, f"{self._name()}: alpha")
        return sympy.Piecewise((t, t > 0), (a * (sympy.exp(t) - 1), True))

    def sympy_df(self, t):
        a = exact_number(self.alpha, f"{self._name()}: alpha")
        return sympy.Piecewise((1, t > 0), (a * sympy.exp(t), True))


@register("gelu")
class GELU(ElementwiseActivation):
    r"""Gaussian error linear unit (Hendrycks & Gimpel 2016), PyTorch's ``torch.nn.functional.gelu``.

    * ``approximate="none"``: :math:`f(z) = z\,\Phi(z)` with the standard normal CDF
      :math:`\Phi(z) = \tfrac12(1+\operatorname{erf}(z/\sqrt2))`;
      :math:`f'(z) = \Phi(z) + z\,\varphi(z)`, :math:`\varphi(z) = e^{-z^2/2}/\sqrt{2\pi}`.
    * ``approximate="tanh"``: :math:`f(z) = \tfrac12 z\,(1+\tanh u)`,
      :math:`u = \sqrt{2/\pi}\,(z + 0.044715\,z^3)`; since :math:`\tfrac12(1+\tanh u) = \sigma(2u)`,
      :math:`f(z) = z\,\sigma(2u)` and :math:`f'(z) = \sigma(2u) + 2 z u'\,\sigma(2u)\sigma(-2u)`,
      :math:`u' = \sqrt{2/\pi}\,(1 + 3\cdot0.044715\,z^2)`.

    Tail accuracy: :math:`\Phi(z) = \tfrac12\operatorname{erfc}(-z/\sqrt2)` (no cancellation for
    :math:`z \ll 0`), and for :math:`z<0` the derivative is
    :math:`\varphi(z)\,(R(|z|) - |z|)` with the Mills ratio
    :math:`R(t) = \sqrt{\pi/2}\,\operatorname{erfcx}(t/\sqrt2) = (1-\Phi(t))/\varphi(t)`, so that
    :math:`\Phi(z)` and :math:`z\varphi(z)` never cancel in floating point away from the root of
    :math:`f'` (:math:`z \approx -0.7518`).

    Parameters
    ----------
    approximate : {"none", "tanh"}
        The exact form (default) or the tanh approximation, as in PyTorch.

    Raises
    ------
    SpecError
        If ``approximate`` is not ``"none"`` or ``"tanh"``.
    """

    kind = "gelu"
    torch_module_types = ("GELU",)

    @classmethod
    def from_torch_module(cls, module, in_shape):
        """``torch.nn.GELU(approximate)``."""
        return {"approximate": str(module.approximate)}, {}
    symbol = r"\operatorname{gelu}"

    def prose(self) -> str:
        if self.approximate == "tanh":
            return (r"GELU (tanh form) $\tfrac12 t(1+\tanh(\sqrt{2/\pi}(t+0.044715t^3)))$, "
                    r"derivative $\sigma(2u) + 2tu'\sigma(2u)\sigma(-2u)$")
        return r"GELU $t\,\Phi(t)$, derivative $\Phi(t) + t\varphi(t)$ ($\Phi$, $\varphi$: standard normal CDF and density)"
    _C = 0.044715  # PyTorch's constant (as a double), exactly 44715/10**6 in the SymPy form

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if not isinstance(approximate, str) or approximate not in ("none", "tanh"):
            raise SpecError(f"gelu: approximate must be 'none' or 'tanh', received {approximate!r}")
        self.approximate = approximate

    def _two_u(self, z):
        return 2.0 * np.sqrt(2.0 / np.pi) * (z + self._C * z * z * z)

    def f(self, z):
        z = np.asarray(z, dtype=float)
        with np.errstate(over="ignore", invalid="ignore"):
            if self.approximate == "tanh":
                return z * expit(self._two_u(z))
            return z * (0.5 * erfc(-z / np.sqrt(2.0)))

    def df(self, z):
        z = np.asarray(z, dtype=float)
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            if self.approximate == "tanh":
                zc = np.clip(z, -1e10, 1e10)  # beyond, f' is 0 or 1 to double precision; keeps z^3 finite
                v = self._two_u(zc)
                du = np.sqrt(2.0 / np.pi) * (1.0 + 3.0 * self._C * zc * zc)
                s = expit(v)
                return s + 2.0 * zc * du * s * expit(-v)
            phi = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
            t = np.abs(z)
            mills = np.sqrt(np.pi / 2.0) * erfcx(t / np.sqrt(2.0))
            neg = phi * (mills - t)                       # z < 0: Φ(z) + zφ(z) = φ(z)(R(|z|) - |z|)
            pos = 0.5 * erfc(-z / np.sqrt(2.0)) + z * phi  # z >= 0: two non-negative terms
            return np.where(z < 0, neg, pos)

    def forward_state(self, A, params):
        r"""``(forward(A), kept state)`` for a composite block's backward (:meth:`vjp_from_state`): the exact GELU keeps
        :math:`z` and :math:`\Phi(z)`, so that :math:`f'(z) = \Phi(z) + z\varphi(z)` does not evaluate ``erfc`` again.
        The tanh form keeps nothing (state None: the block calls the ordinary backward)."""
        if self.approximate != "none":
            return self.forward(A, params), None
        z = np.asarray(A, dtype=float)
        with np.errstate(over="ignore", invalid="ignore"):
            Phi = 0.5 * erfc(-z / np.sqrt(2.0))
            return z * Phi, (z, Phi)

    def vjp_from_state(self, state, G, want_params: bool = True):
        r"""``(G ⊙ f'(z), {})`` from :meth:`forward_state`'s ``(z, Φ(z))``; the same numbers as :meth:`df` (z ≥ 0:
        :math:`\Phi + z\varphi`; z < 0: :math:`\varphi(R(|z|) - |z|)` with the Mills ratio, no cancellation)."""
        z, Phi = state
        N = z.shape[0]
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            phi = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
            d = Phi + z * phi
            neg = z < 0
            if neg.any():
                t = -z[neg]
                d[neg] = phi[neg] * (np.sqrt(np.pi / 2.0) * erfcx(t / np.sqrt(2.0)) - t)
        return np.asarray(G, dtype=float).reshape(N, -1) * d.reshape(N, -1), {}

    def sympy_f(self, t):
        if self.approximate == "tanh":
            c = sympy.Rational(44715, 10 ** 6)
            return t * (1 + sympy.tanh(sympy.sqrt(2 / sympy.pi) * (t + c * t ** 3))) / 2
        return t * (1 + sympy.erf(t / sympy.sqrt(2))) / 2

    def torch_f(self, z):
        import torch

        return torch.nn.functional.gelu(z, approximate=self.approximate)

    @classmethod
    def protocol_examples(cls):
        return [({}, (5,)), ({"approximate": "tanh"}, (2, 3, 3))]

    def describe(self):
        return "gelu" if self.approximate == "none" else f"gelu (approximate={self.approximate})"


class GenericActivation(ElementwiseActivation):
    r"""An *undefined* elementwise function :math:`f` (symbolic backend only).

    Its Jacobian is :math:`\operatorname{diag}(f'(z_1),\dots,f'(z_n))` with :math:`f'`
    an unevaluated SymPy derivative, exactly as printed in the papers.
    """

    kind = "generic"
    latex_prose = "an undefined function"

    def __init__(self, name: str = "f"):
        super().__init__()
        if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
            raise SpecError(f"generic activation: name must be an identifier, received {name!r}")
        self.name = name
        self.symbol = name
        self.func = sympy.Function(name, real=True)

    def f(self, z):
        raise UnsupportedInputError(f"generic activation {self.name!r} has no numeric value; use the symbolic backend")

    df = f

    def sympy_f(self, t):
        return self.func(t)

    def sympy_df(self, t):
        s = sympy.Dummy("s", real=True)
        return sympy.Subs(sympy.diff(self.func(s), s), s, t).doit() if not isinstance(t, sympy.Symbol) else sympy.diff(self.func(t), t)
