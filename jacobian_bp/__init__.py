"""jacobian_bp: backpropagation as an explicit product of typed Jacobians.

Every layer's full Jacobian -- weights as ``I ⊗ aᵀ`` (or ``aᵀ ⊗ I``), activations as
``diag f'(z)``, softmax as ``diag(s) − s sᵀ``, convolution as a Toeplitz matrix -- is
built as a structured, typed matrix; their product (Damadi et al., Algorithm 1)
gives ``∇θℓ``, which is cross-checked against the textbooks' closed forms, finite
differences and autograd.
"""
from .conventions import PRESETS, Convention, commutation_matrix, get_convention
from .errors import (DataError, JacobianBPError, MemoryBudgetError, ShapeError, SpaceMismatchError,
                     SpecError)
from .guard import get_memory_budget, memory_budget, set_memory_budget
from .parallel import get_num_threads, num_threads, set_num_threads
from .jacobian import Jacobian, Space, hstack, vstack
from .layers import (ELU, Arctan, Dense, GenericActivation, IdentityActivation, LeakyReLU, RadialSigmoid,
                     ReLU, Sigmoid, Softmax, Softplus, Tanh, layer_class)
from .losses import BCE, MSE, CrossEntropy, make_loss
from .network import Gradient, Network
from .verify import VerificationReport, verify

from . import (claims, convert, curvature, datasets, derivation, errata, latex, lazy, per_sample,  # noqa: E402
               reference, spec, symbolic, toeplitz, training)
from .curvature import empirical_ntk, gauss_newton  # noqa: E402
from .per_sample import per_sample_gradients  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Convention", "PRESETS", "get_convention", "commutation_matrix", "Jacobian", "Space", "hstack", "vstack",
    "Network", "Gradient", "Dense", "IdentityActivation", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Arctan",
    "Softplus", "ELU", "GenericActivation", "Softmax", "RadialSigmoid", "layer_class", "MSE", "BCE",
    "CrossEntropy", "make_loss", "verify", "VerificationReport", "set_memory_budget", "get_memory_budget",
    "memory_budget", "get_num_threads", "set_num_threads", "num_threads", "JacobianBPError", "ShapeError", "SpaceMismatchError", "MemoryBudgetError", "SpecError",
    "DataError", "gauss_newton", "empirical_ntk", "per_sample_gradients", "claims", "convert", "curvature",
    "datasets", "derivation", "errata", "latex", "lazy", "per_sample", "reference", "spec", "symbolic", "toeplitz",
    "training",
]
