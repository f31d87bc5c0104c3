"""Floor 5: the claim checker: state a formula, get holds / fails / ill-typed with a diagnosis."""
from .core import *  # noqa: F401,F403
from .core import __all__  # noqa: F401
