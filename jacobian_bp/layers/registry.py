"""The one registry of layer classes: spec name → class, filled by ``@register(name)`` on each class.

A spec entry ``{"type": NAME, **kwargs}`` becomes ``layer_class(NAME)(**kwargs)`` (after
:mod:`jacobian_bp.spec` checked its keys against the constructor's signature).  Adding a layer is
one file: define the class with its protocol methods (:mod:`jacobian_bp.layers.base`) and decorate
it with ``@register("name")``; every consumer (spec, oracles, renderers, the protocol tests) finds
it here.

The families whose import is costly (convolution, pooling, flatten: sparse Toeplitz machinery) are
imported on the first lookup that misses, so that ``import jacobian_bp`` stays light.
"""
from __future__ import annotations

import importlib

from ..errors import SpecError

__all__ = ["REGISTRY", "register", "layer_class", "all_layer_classes", "LAZY_MODULES"]

#: spec name -> layer class (the lazily loaded families appear once their module was imported)
REGISTRY: dict[str, type] = {}

#: layer modules imported on demand (by :func:`layer_class` on a miss and by :func:`all_layer_classes`)
LAZY_MODULES = ("jacobian_bp.layers.conv", "jacobian_bp.layers.pooling", "jacobian_bp.layers.flatten",
                "jacobian_bp.layers.residual", "jacobian_bp.layers.normalization",
                "jacobian_bp.layers.batch_norm", "jacobian_bp.layers.linear", "jacobian_bp.layers.attention",
                "jacobian_bp.layers.recurrent")


def register(name: str):
    """Class decorator: record the class under the spec name ``name`` (its ``kind``).

    Raises
    ------
    SpecError
        If ``name`` is already taken by another class.
    """
    def deco(cls: type) -> type:
        old = REGISTRY.get(name)
        if old is not None and old is not cls:
            raise SpecError(f"layer type {name!r} is registered twice ({old.__name__} and {cls.__name__})")
        REGISTRY[name] = cls
        return cls

    return deco


def _load_lazy() -> None:
    for mod in LAZY_MODULES:
        importlib.import_module(mod)


def layer_class(name: str) -> type:
    """Return the layer class registered under ``name`` (a spec's ``"type"``).

    Raises
    ------
    SpecError
        ``unknown layer type 'x'; known: ...`` for a name no class registered.
    """
    if isinstance(name, str) and name in REGISTRY:
        return REGISTRY[name]
    _load_lazy()
    if isinstance(name, str) and name in REGISTRY:
        return REGISTRY[name]
    raise SpecError(f"unknown layer type {name!r}; known: {', '.join(sorted(REGISTRY))}")


def all_layer_classes() -> dict[str, type]:
    """Every registered layer class (the lazy families imported first), keyed by spec name."""
    _load_lazy()
    return dict(REGISTRY)
