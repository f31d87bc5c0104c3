r"""Per-document notation: how each source writes vectors, layer indices, Jacobians and gradients.

The same mathematical object is written differently in the four source documents; the
LaTeX renderer (:mod:`jacobian_bp.render.latex`) asks a :class:`Notation` for every symbol:

=========================  ==========================================  ======================================  ============================================
object                     ``damadi``                                  ``ganev``                               ``park``
=========================  ==========================================  ======================================  ============================================
pre-activation of layer l  :math:`\mathbf z^{[l]}`                     :math:`\mathbf z_\ell`                  :math:`\boldsymbol z[\ell]`
weight                     :math:`\mathbf W^{[l]}`                     :math:`W_\ell`                          :math:`\boldsymbol W[\ell]`
transpose                  :math:`(\mathbf W^{[l]})^\top`              :math:`W_\ell^T`                        :math:`\boldsymbol W[\ell]^T`
Jacobian                   :math:`\mathbf J_{\mathbf W^{[l]},\mathbf b^{[l]}}\mathbf z^{[L]}`   :math:`\partial\mathbf z_L/\partial W_\ell`   :math:`\partial\boldsymbol z[L]/\partial\boldsymbol W[\ell]`
activation Jacobian        :math:`\operatorname{diag} f^{[l]\prime}(\mathbf z^{[l]})`  :math:`\mathrm{Jac}_\ell`   :math:`\operatorname{diag}(g[\ell]'(\boldsymbol z[\ell]))`
gradient w.r.t. z          :math:`\boldsymbol\delta^{[l]} = \nabla_{\mathbf z^{[l]}}\ell`      :math:`\nabla_{\mathbf z_\ell}\mathcal L`  :math:`\boldsymbol\delta[\ell]`, batch :math:`d\boldsymbol Z[\ell]`
=========================  ==========================================  ======================================  ============================================

Sources: Damadi §2 (bold vectors and matrices, layer index ``[l]``, ``\mathbf J``),
§3.4 (``diag``); Ganev §1.5, §3.1 (``@``-free matrix products, ``W_\ell``, ``\mathrm{Jac}_\ell``,
``\mathcal L``, ``^T``); Park §2, Thm. 4.1, Remark 5.3, Thm. 5.4 (``\partial y/\partial x``,
``[\ell]``, ``g[\ell]``, ``\boldsymbol\delta``, ``d\boldsymbol Z[\ell]``); MML §5.2--5.6
(``\partial f/\partial x``, gradient as a row); PyTorch: superscript ``(l)`` and
``\partial`` (no document of its own).

The preset is chosen from a network's convention (``Convention.notation``) by
:func:`get_notation`.  Every method returns a LaTeX fragment for math mode.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import SpecError

__all__ = ["Notation", "NOTATIONS", "get_notation", "register_notation", "sub"]


def sub(s) -> str:
    """A subscript/superscript argument: ``3`` stays ``3``, ``12`` becomes ``{12}``."""
    s = str(s)
    return s if len(s) == 1 else "{" + s + "}"


#: The fields of :class:`Notation` that select a rendering rule (not LaTeX).
_NOTATION_CHOICES = {
    "index": ("sup_bracket", "sub", "bracket", "sup_paren", "none"),
    "jacobian": ("J", "partial"),
    "batch_gradient": ("nabla", "d"),
}


@dataclass(frozen=True)
class Notation:
    r"""How one document writes the symbols of a network.

    Attributes
    ----------
    name : str
        Preset name (``damadi``, ``ganev``, ``park``, ``mml``, ``pytorch``).
    vector, matrix : str
        Format strings for a vector / matrix letter (``r"\mathbf{%s}"``).
    index : {"sup_bracket", "sub", "bracket", "sup_paren", "none"}
        Layer index: :math:`\mathbf z^{[l]}`, :math:`\mathbf z_l`, :math:`\boldsymbol z[l]`, :math:`\mathbf z^{(l)}`,
        or none (Damadi §3.1 drops it for a one-layer network).
    transpose : str
        ``r"\top"`` or ``"T"``.
    jacobian : {"J", "partial"}
        :math:`\mathbf J_{\mathbf x}\mathbf y` (Damadi) or :math:`\partial\mathbf y/\partial\mathbf x`.
    activation : str
        Letter of the elementwise activation (``f``, ``\sigma``, ``g``).
    activation_jacobian : str
        Name of the activation Jacobian (Ganev's ``\mathrm{Jac}``) or ``""``.
    loss : str
        The per-sample loss symbol (``\ell``, ``\mathcal{L}``, ``L``).
    delta : str
        Letter of :math:`\nabla_{\mathbf z}\ell` (``\boldsymbol{\delta}``) or ``""`` (Ganev writes the gradient).
    batch_gradient : str
        ``"d"`` for Park's ``d\boldsymbol Z[\ell]`` or ``"nabla"``.
    theta : str
        The parameter vector.
    plain_inputs : bool
        Ganev writes the sample ``x``, ``y`` and biases ``b_\ell`` in plain letters.
    source : str
        Where the notation comes from (plain text).

    Raises
    ------
    SpecError
        On construction, when a symbol is not a safe LaTeX math string
        (:func:`jacobian_bp.backend.escape.check_math`: whitelisted commands only, no
        ``% # $ &``, balanced braces, printable ASCII) or a rule field has an unknown value.
    """

    name: str
    vector: str = r"\mathbf{%s}"
    matrix: str = r"\mathbf{%s}"
    index: str = "sup_bracket"
    transpose: str = r"\top"
    jacobian: str = "J"
    activation: str = "f"
    activation_jacobian: str = ""
    loss: str = r"\ell"
    delta: str = r"\boldsymbol{\delta}"
    batch_gradient: str = "nabla"
    theta: str = r"\boldsymbol{\theta}"
    plain_inputs: bool = False
    layer_letter: str = "l"
    source: str = ""

    def __post_init__(self) -> None:
        # Every symbol reaches LaTeX math mode verbatim: validate it against the whitelist of
        # jacobian_bp.backend.escape (a Notation can be built from user input).
        from ..backend.escape import check_math

        if not isinstance(self.name, str) or not self.name:
            raise SpecError(f"notation: name must be a non-empty string, received {self.name!r}")
        for field, allowed in _NOTATION_CHOICES.items():
            v = getattr(self, field)
            if v not in allowed:
                raise SpecError(f"notation {self.name!r}: {field} must be one of {allowed}, received {v!r}")
        for field in ("vector", "matrix"):
            fmt = getattr(self, field)
            if not isinstance(fmt, str) or fmt.count("%s") != 1 or "%" in fmt.replace("%s", ""):
                raise SpecError(f"notation {self.name!r}: {field} must be a format string with exactly one '%s' "
                                f"and no other '%', received {fmt!r}")
            check_math(fmt.replace("%s", "x"), f"notation {self.name!r}: {field}")
        for field in ("transpose", "activation", "loss", "theta", "layer_letter"):
            v = getattr(self, field)
            if isinstance(v, str) and not v:
                raise SpecError(f"notation {self.name!r}: {field} must be a non-empty LaTeX math string, received ''")
            check_math(v, f"notation {self.name!r}: {field}")
        for field in ("activation_jacobian", "delta"):  # may be empty
            check_math(getattr(self, field), f"notation {self.name!r}: {field}")
        if not isinstance(self.plain_inputs, bool):
            raise SpecError(f"notation {self.name!r}: plain_inputs must be a bool, received {self.plain_inputs!r}")
        if not isinstance(self.source, str):
            raise SpecError(f"notation {self.name!r}: source must be a string, received {self.source!r}")

    # ------------------------------------------------------------------ letters
    def _idx(self, base: str, l) -> str:
        l = str(l)
        if self.index == "none":
            return base
        if self.index == "sup_bracket":
            return f"{base}^{{[{l}]}}"
        if self.index == "sup_paren":
            return f"{base}^{{({l})}}"
        if self.index == "bracket":
            return f"{base}[{l}]"
        return f"{base}_{sub(l)}"

    def has_superscript(self, symbol: str) -> bool:
        """Whether a symbol built by this notation carries a superscript (then its
        transpose needs parentheses: :math:`(\\mathbf a^{[1]})^\\top`)."""
        depth = 0
        for ch in symbol:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "^" and depth == 0:
                return True
        return False

    def vec(self, letter: str, l=None) -> str:
        base = self.vector % letter
        return base if l is None else self._idx(base, l)

    def mat(self, letter: str, l=None) -> str:
        base = self.matrix % letter
        return base if l is None else self._idx(base, l)

    def z(self, l) -> str:
        """Pre-activation :math:`\\mathbf z^{[l]}`."""
        return self.vec("z", l)

    def a(self, l) -> str:
        """Post-activation :math:`\\mathbf a^{[l]}`; ``a(0)`` is the input :math:`\\mathbf x`."""
        return self.x if str(l) == "0" else self.vec("a", l)

    def h(self, l, j) -> str:
        """Intermediate output ``j`` inside stage ``l`` (several parameter-free layers)."""
        base = self.vector % "h"
        if self.index in ("sup_bracket", "sup_paren"):
            return f"{self._idx(base, l)}_{sub(j)}"
        if self.index == "bracket":
            return f"{base}_{sub(j)}[{l}]"
        return f"{base}_{{{l},{j}}}"

    def weight(self, local: str, l) -> str:
        """Parameter tensor ``local`` (``W``, ``K``) of stage ``l``."""
        return self.mat(local, l)

    def bias(self, l) -> str:
        if self.plain_inputs:
            return self._idx("b", l)
        return self.vec("b", l)

    def param(self, local: str, l, layer=None) -> str:
        r"""Parameter ``local`` of stage ``l``; a block parameter ``W.1`` (first parametric layer of the residual
        block at stage 2) is written with the tag ``2.1``: :math:`\mathbf W^{[2.1]}`, :math:`W_{2.1}`, :math:`\boldsymbol W[2.1]`.

        The facts come from the layer that owns it (``layer``, when given): its
        :meth:`~jacobian_bp.layers.base.Layer.param_symbol` (LayerNorm's :math:`\boldsymbol\gamma`) and its
        :meth:`~jacobian_bp.layers.base.Layer.param_role` (a bias is a vector); without a layer, the defaults
        read the name (``W_Q`` is :math:`\mathbf W_{Q}`, ``b_hh`` the bias :math:`\mathbf b_{hh}`, ``gamma``
        :math:`\boldsymbol\gamma`).  The notation adds the layer index in its own style.
        """
        from ..layers.base import default_param_role, default_param_symbol

        base, dot, rest = local.partition(".")
        if dot:
            local, l = base, f"{l}.{rest}"
        ask_role = getattr(layer, "param_role", None)
        role = ask_role(local) if callable(ask_role) else default_param_role(local)
        ask_sym = getattr(layer, "param_symbol", None)
        own = ask_sym(local) if callable(ask_sym) else None
        if own is None:
            bias = role == "bias"
            fmt = self.vector if bias else self.matrix
            if bias and self.plain_inputs:
                fmt = "%s"
            own = default_param_symbol(local, fmt)
        return self.index_on(own, l)

    def index_on(self, symbol: str, l) -> str:
        r"""The layer index on a symbol that may already carry a subscript (:math:`\mathbf W_{Q}`): a ``sub`` index
        joins it (:math:`\mathbf W_{Q,1}`) instead of making a double subscript."""
        head, us, subscript = symbol.rpartition("_{")
        if self.index == "sub" and us and subscript.endswith("}") and "{" not in subscript:
            return f"{head}_{{{subscript[:-1]},{l}}}"
        return self._idx(symbol, l)

    def param_vec(self, local: str, l, layer=None, size: int | None = None) -> str:
        r""":math:`\operatorname{vec}\mathbf W^{[l]}` for a matrix parameter (what a Jacobian is taken with respect to:
        :math:`\partial\mathbf z/\partial\operatorname{vec}\mathbf W`), the parameter itself for a bias or a vector."""
        from ..layers.base import default_param_role

        ask_role = getattr(layer, "param_role", None)
        base = local.partition(".")[0]
        role = ask_role(base) if callable(ask_role) else default_param_role(base)
        sym = self.param(local, l, layer)
        if role == "bias":
            return sym
        shapes = getattr(layer, "param_shapes", None)
        if layer is not None and callable(shapes) and getattr(layer, "in_shape", None) is not None:
            shape = shapes().get(local)
            if shape is not None and len(shape) <= 1:
                return sym
        return rf"\operatorname{{vec}}{sym}"

    @property
    def x(self) -> str:
        return "x" if self.plain_inputs else self.vector % "x"

    @property
    def y(self) -> str:
        return "y" if self.plain_inputs else self.vector % "y"

    @property
    def yhat(self) -> str:
        return r"\hat{y}" if self.plain_inputs else r"\hat{" + (self.vector % "y") + "}"

    def T(self, symbol: str, atomic: bool | None = None) -> str:
        """Transpose of ``symbol``: :math:`\\mathbf x^\\top` or :math:`(\\mathbf a^{[1]})^\\top`."""
        if atomic is None:
            atomic = not self.has_superscript(symbol)
        if atomic:
            return f"{symbol}^{self.transpose}"
        if "\\frac" in symbol:
            return rf"\left({symbol}\right)^{self.transpose}"
        return f"({symbol})^{self.transpose}"

    # ------------------------------------------------------------------ calculus
    def jac(self, of: str, wrt: str) -> str:
        r"""The Jacobian of ``of`` with respect to ``wrt``."""
        if self.jacobian == "J":
            return rf"\mathbf{{J}}_{{{wrt}}}{of}"
        return rf"\frac{{\partial {of}}}{{\partial {wrt}}}"

    def act(self, l, vector: bool = False) -> str:
        r"""The activation function of stage ``l`` (:math:`f^{[l]}`, :math:`\sigma_\ell`, :math:`g[\ell]`)."""
        base = (r"\mathbf{%s}" % self.activation) if (vector and self.name == "damadi") else self.activation
        return self._idx(base, l)

    def act_prime(self, l) -> str:
        """The derivative of the scalar activation of stage ``l``: :math:`f^{[l]\\prime}`, :math:`\\sigma_l'`."""
        s = self.act(l)
        if self.index in ("sup_bracket", "sup_paren"):
            return s[:-1] + r"\prime}"
        return s + "'"  # f', \sigma_1', g[1]' 

    def act_jac_name(self, l) -> str:
        """Ganev's :math:`\\mathrm{Jac}_\\ell` (empty for the other documents)."""
        return self._idx(self.activation_jacobian, l) if self.activation_jacobian else ""

    def diag_act(self, l, arg: str) -> str:
        r""":math:`\operatorname{diag} f^{[l]\prime}(\mathbf z^{[l]})` (Park: :math:`\operatorname{diag}(g[\ell]'(\boldsymbol z[\ell]))`)."""
        if self.name == "park":
            return rf"\operatorname{{diag}}({self.act_prime(l)}({arg}))"
        return rf"\operatorname{{diag}} {self.act_prime(l)}({arg})"

    def grad(self, wrt: str) -> str:
        r"""The gradient of the per-sample loss, :math:`\nabla_{\mathbf z}\ell`."""
        return rf"\nabla_{{{wrt}}} {self.loss}"

    def cost_grad(self, symbol: str) -> str:
        r"""The gradient of the (batch) cost with respect to ``symbol``: Park's :math:`d\boldsymbol W[\ell]`
        (Remark 5.3: :math:`d\mathbf T = \nabla_{\mathbf T}J`), :math:`\nabla_{\mathbf W^{[l]}}\ell` otherwise."""
        return f"d{symbol}" if self.batch_gradient == "d" else self.grad(symbol)

    def dz(self, l) -> str:
        r""":math:`\nabla_{\mathbf z^{[l]}}\ell` by its name: :math:`\boldsymbol\delta^{[l]}` or Ganev's :math:`\nabla_{\mathbf z_\ell}\mathcal L`."""
        return self._idx(self.delta, l) if self.delta else self.grad(self.z(l))

    def identity(self, n) -> str:
        return rf"\mathbf{{I}}_{sub(n)}"

    @staticmethod
    def reals(*dims) -> str:
        dims = [str(d) for d in dims if d is not None]
        return r"\mathbb{R}^{" + r"\times ".join(dims) + "}"

    def layer(self) -> str:
        """The generic layer index letter (``l`` or ``\\ell``)."""
        return self.layer_letter


NOTATIONS: dict[str, Notation] = {
    "damadi": Notation("damadi", theta=r"\theta", layer_letter="l",
                       source="Damadi, Moharrer, Cham, §2 and §3"),
    "ganev": Notation("ganev", vector=r"\mathbf{%s}", matrix="%s", index="sub", transpose="T", jacobian="partial",
                      activation=r"\sigma", activation_jacobian=r"\mathrm{Jac}", loss=r"\mathcal{L}", delta="",
                      theta=r"\theta", plain_inputs=True, layer_letter=r"\ell", source="Ganev §1.5, §2, §3.1"),
    "park": Notation("park", vector=r"\boldsymbol{%s}", matrix=r"\boldsymbol{%s}", index="bracket", transpose="T",
                     jacobian="partial", activation="g", loss=r"\mathcal{L}", delta=r"\boldsymbol{\delta}",
                     batch_gradient="d", layer_letter=r"\ell", source="Park §2, Thm. 4.1, Thm. 5.4"),
    "mml": Notation("mml", vector=r"\boldsymbol{%s}", matrix=r"\boldsymbol{%s}", index="sub", transpose=r"\top",
                    jacobian="partial", activation=r"\sigma", loss="L", delta=r"\boldsymbol{\delta}",
                    layer_letter="i", source="MML §5.2-5.6 (CSE463 slides)"),
    "pytorch": Notation("pytorch", index="sup_paren", jacobian="partial", activation="f", loss=r"\ell",
                        source="PyTorch-style superscripts (no document)"),
}


def register_notation(notation: Notation) -> Notation:
    """Make a user-defined :class:`Notation` available by its name everywhere a preset name is accepted.

    After ``register_notation(Notation("mine", ...))``, ``get_notation("mine")``, a convention with
    ``notation="mine"`` (``get_convention("pytorch").replace(notation="mine")``) and every renderer
    (derivation, Jupyter display, :class:`~jacobian_bp.symbolic.blocks.BlockChain`) use it -- no package
    file is edited.  Registering a name again replaces its notation; the five documents' names are refused.
    """
    from ..engine.conventions import install_notation, register_notation_name

    if not isinstance(notation, Notation):
        raise SpecError(f"register_notation: expected a Notation, received {type(notation).__name__}")
    if notation.name in _BUILTIN and NOTATIONS.get(notation.name) is not notation:
        raise SpecError(f"register_notation: {notation.name!r} is a built-in notation; choose another name")
    register_notation_name(notation.name)
    NOTATIONS[notation.name] = notation
    install_notation(notation)
    return notation


_BUILTIN = frozenset(NOTATIONS)


def _install_presets() -> None:
    """Make the presets reachable from the floors below (:func:`jacobian_bp.engine.conventions.resolve_notation`)."""
    from ..engine.conventions import install_notation

    for nt in NOTATIONS.values():
        install_notation(nt)


_install_presets()


def get_notation(obj=None) -> Notation:
    """The :class:`Notation` for a preset name, a Convention, a Network, or a Notation.

    ``None`` gives Damadi's notation.  Unknown names raise :class:`~jacobian_bp.errors.SpecError`.
    """
    if obj is None:
        return NOTATIONS["damadi"]
    if isinstance(obj, Notation):
        return obj
    if isinstance(obj, str):
        if obj not in NOTATIONS:
            raise SpecError(f"unknown notation {obj!r}; presets: {', '.join(NOTATIONS)}")
        return NOTATIONS[obj]
    conv = getattr(obj, "convention", obj)
    name = getattr(conv, "notation", None)
    if isinstance(name, Notation):
        return name
    if isinstance(name, str) and name in NOTATIONS:
        return NOTATIONS[name]
    raise SpecError(f"get_notation: expected a preset name, a Convention, a Network or a Notation, "
                    f"received {type(obj).__name__}")
