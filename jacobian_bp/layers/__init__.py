"""Layer families.  Each spec name maps to a class; conv/pool/flatten load lazily.

The registry is used by :mod:`jacobian_bp.spec` to build networks from JSON: a spec
entry ``{"type": NAME, **kwargs}`` becomes ``REGISTRY[NAME](**kwargs)`` after its keys
were checked against the constructor's signature.
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

_LAZY = {
    "conv2d": ("jacobian_bp.layers.conv", "Conv2d"),
    "maxpool2d": ("jacobian_bp.layers.pooling", "MaxPool2d"),
    "avgpool2d": ("jacobian_bp.layers.pooling", "AvgPool2d"),
    "flatten": ("jacobian_bp.layers.flatten", "Flatten"),
}

REGISTRY = {
    "dense": Dense,
    "identity": IdentityActivation,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "arctan": Arctan,
    "softplus": Softplus,
    "elu": ELU,
    "softmax": Softmax,
    "radial_sigmoid": RadialSigmoid,
}


def layer_class(name: str) -> type:
    """Return the layer class registered under ``name`` (a spec's ``"type"``)."""
    if name in REGISTRY:
        return REGISTRY[name]
    if name in _LAZY:
        mod, cls = _LAZY[name]
        return getattr(importlib.import_module(mod), cls)
    from ..errors import SpecError

    raise SpecError(f"unknown layer type {name!r}; known: {', '.join(sorted(set(REGISTRY) | set(_LAZY)))}")


def __getattr__(name):
    for mod, cls in _LAZY.values():
        if cls == name:
            return getattr(importlib.import_module(mod), cls)
    raise AttributeError(name)


__all__ = [
    "Layer", "Dense", "ElementwiseActivation", "IdentityActivation", "ReLU", "LeakyReLU", "Sigmoid",
    "Tanh", "Arctan", "Softplus", "ELU", "GenericActivation", "Softmax", "RadialSigmoid",
    "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten", "REGISTRY", "layer_class",
]
