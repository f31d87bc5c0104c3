"""Layer families.  Each spec name maps to a class (:mod:`.registry`); conv/pool/flatten load lazily.

The registry is used by :mod:`jacobian_bp.spec` to build networks from JSON: a spec
entry ``{"type": NAME, **kwargs}`` becomes ``layer_class(NAME)(**kwargs)`` after its keys
were checked against the constructor's signature.  Each class registers itself with
``@register(NAME)`` in its own file.
"""
from __future__ import annotations

import importlib

from .base import Layer
from .dense import Dense
from .activations import (
    ELU, Arctan, ElementwiseActivation, GenericActivation, IdentityActivation, LeakyReLU, ReLU,
    Sigmoid, Softplus, Tanh,
)
from .vector_activations import RadialSigmoid, Softmax
from .registry import REGISTRY, all_layer_classes, layer_class, register

_LAZY = {"Conv2d": "jacobian_bp.layers.conv", "MaxPool2d": "jacobian_bp.layers.pooling",
         "AvgPool2d": "jacobian_bp.layers.pooling", "Flatten": "jacobian_bp.layers.flatten"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    # any registered class by its class name (a new layer needs no line here)
    for cls in all_layer_classes().values():
        if cls.__name__ == name:
            return cls
    raise AttributeError(name)


__all__ = [
    "Layer", "Dense", "ElementwiseActivation", "IdentityActivation", "ReLU", "LeakyReLU", "Sigmoid",
    "Tanh", "Arctan", "Softplus", "ELU", "GenericActivation", "Softmax", "RadialSigmoid",
    "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten", "REGISTRY", "layer_class", "register", "all_layer_classes",
]
