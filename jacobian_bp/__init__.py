"""jacobian_bp: backpropagation as an explicit product of typed Jacobians.

Every layer's full Jacobian -- weights as ``I ⊗ aᵀ`` (or ``aᵀ ⊗ I``), activations as
``diag f'(z)``, softmax as ``diag(s) − s sᵀ``, convolution as a Toeplitz matrix -- is
built as a structured, typed matrix; their product (Damadi et al., Algorithm 1)
gives ``∇θℓ``, which is cross-checked against the textbooks' closed forms, finite
differences and autograd.
"""
from .engine.conventions import PRESETS, Convention, commutation_matrix, get_convention
from .errors import (DataError, JacobianBPError, MemoryBudgetError, ShapeError, SpaceMismatchError,
                     SpecError)
from .backend.guard import get_memory_budget, memory_budget, set_memory_budget
from .backend.parallel import get_num_threads, num_threads, reset_num_threads, set_num_threads
from .engine.jacobian import Jacobian, Space, hstack, vstack
from .layers import (ELU, Arctan, Dense, GenericActivation, IdentityActivation, LeakyReLU, RadialSigmoid,
                     ReLU, Sigmoid, Softmax, Softplus, Tanh, layer_class)
from .layers.losses import BCE, MSE, BCEWithLogits, CrossEntropy, CrossEntropyLogits, make_loss
from .engine.network import Gradient, Network
from .oracles.verify import VerificationReport, verify
from .uses.torch_import import TorchNetwork, from_torch
from .oracles.module_check import ModuleCheckReport, check_layer, check_module
from .render.plots import plot_gradient_norms, plot_jacobian

from . import claims
from .uses import convert
from .uses import curvature
from .uses import datasets
from .render import derivation
from .documents import errata
from .render import latex
from .uses import lazy
from .engine import per_sample
from .oracles import reference
from . import spec
from . import symbolic
from .backend import toeplitz
from .uses import training
from .uses.curvature import empirical_ntk, gauss_newton  # noqa: E402
from .engine.per_sample import per_sample_gradients  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Convention", "PRESETS", "get_convention", "commutation_matrix", "Jacobian", "Space", "hstack", "vstack",
    "Network", "Gradient", "Dense", "IdentityActivation", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Arctan",
    "Softplus", "ELU", "GenericActivation", "Softmax", "RadialSigmoid", "layer_class", "MSE", "BCE",
    "CrossEntropy", "make_loss", "verify", "VerificationReport", "set_memory_budget", "get_memory_budget",
    "memory_budget", "get_num_threads", "set_num_threads", "reset_num_threads", "num_threads", "JacobianBPError", "ShapeError", "SpaceMismatchError", "MemoryBudgetError", "SpecError",
    "DataError", "gauss_newton", "empirical_ntk", "per_sample_gradients", "claims", "convert", "curvature",
    "datasets", "derivation", "errata", "latex", "lazy", "per_sample", "reference", "spec", "symbolic", "toeplitz",
    "training", "from_torch", "TorchNetwork", "check_module", "check_layer", "ModuleCheckReport", "plot_jacobian",
    "plot_gradient_norms", "CrossEntropyLogits", "BCEWithLogits", "GELU",
    # every layer class by its class name (the costly families load on first access, through jacobian_bp.layers)
    "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten", "LayerNorm", "BatchNorm1dEval", "Residual",
]

# Module paths before the floors (0.1): ``jacobian_bp.operators`` is ``jacobian_bp.backend.operators``, …
import importlib as _importlib  # noqa: E402
import sys as _sys  # noqa: E402

_MOVED = {
    'operators': 'backend.operators',
    'guard': 'backend.guard',
    'parallel': 'backend.parallel',
    'kernels': 'backend.kernels',
    'toeplitz': 'backend.toeplitz',
    'atomic': 'backend.atomic',
    'exact': 'backend.exact',
    'losses': 'layers.losses',
    'conventions': 'engine.conventions',
    'jacobian': 'engine.jacobian',
    'chain': 'engine.chain',
    'network': 'engine.network',
    'lazy': 'uses.lazy',
    'per_sample': 'engine.per_sample',
    'curvature': 'uses.curvature',
    'convert': 'uses.convert',
    'training': 'uses.training',
    'datasets': 'uses.datasets',
    'reference': 'oracles.reference',
    'torch_oracle': 'oracles.torch_oracle',
    'verify': 'oracles.verify',
    'latex': 'render.latex',
    'latex_escape': 'backend.escape',
    'notation': 'render.notation',
    'derivation': 'render.derivation',
    'paper_equations': 'render.paper_equations',
    'catalogue': 'documents.catalogue',
    'errata': 'documents.errata',
}
for _old, _new in _MOVED.items():
    _sys.modules.setdefault(f"{__name__}.{_old}", _importlib.import_module(f".{_new}", __name__))


def __getattr__(name: str):
    """``jacobian_bp.<old module name>`` (attribute access) for the module paths before the floors."""
    if name in _MOVED:
        return _sys.modules[f"{__name__}.{name}"]
    if name[:1].isupper():  # a layer class (Conv2d, LayerNorm, ...): jacobian_bp.layers finds every registered one
        from . import layers as _layers

        try:
            return getattr(_layers, name)
        except AttributeError:
            pass
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
