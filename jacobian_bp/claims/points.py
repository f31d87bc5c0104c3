r"""Given points of a network claim: inputs and parameters chosen by the user (``Setting(points=...)``).

Random instances are generic: no symmetric weight, no tie in a pooling window, no pre-activation exactly at a
kink.  A claim that is only true (or only false) at such points is judged there too when the setting lists
them, each a dict::

    Setting(None, hidden="relu", widths=((2, 2, 1),),
            points=[{"x": [1.0, -1.0], "W1": [[1.0, 1.0], [0.5, 2.0]], "b1": [-0.0, 0.0], "label": "z = 0"}])

Keys: ``x`` (one sample, or a batch in the convention's layout), ``y`` (its targets; default: drawn as for the
random instances), any parameter name of the network (``W1``, ``b2``, ``gamma2``, ``W_hh1``, ``K1`` -- user
layout, the shapes :meth:`Network.init_params` gives), ``label`` (a name for reports) and, for a dense setting
with several architectures, ``widths`` (which one; default the first).  Parameters not given keep their random
values of the setting's first seed.  Every value is checked when the setting is made: a name the network lacks,
a shape, a non-finite or non-numeric entry is refused with a one-line :class:`~jacobian_bp.errors.SpecError`.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import JacobianBPError, SpecError

__all__ = ["freeze_points", "thaw_point", "point_network"]


def _array(v, where: str) -> np.ndarray:
    if isinstance(v, (str, bytes)) or v is None:
        raise SpecError(f"setting: {where}: expected numbers (an array), received {type(v).__name__} {v!r:.60}")
    try:
        a = np.array(v, dtype=float)
    except (TypeError, ValueError):
        raise SpecError(f"setting: {where}: expected real numbers (an array), received {v!r:.80}") from None
    if not np.all(np.isfinite(a)):
        raise SpecError(f"setting: {where}: every entry must be finite, received {a.ravel()[~np.isfinite(a.ravel())][0]}")
    return a


def _freeze_array(a: np.ndarray) -> tuple:
    return ("array", tuple(int(s) for s in a.shape), tuple(float(t) for t in a.ravel()))


def point_network(setting, widths: tuple | None):
    """The network a point of ``setting`` applies to (the dense architecture ``widths``, or the setting's network)."""
    from .layer_networks import build_network, dense_network

    return build_network(setting) if setting.network is not None else dense_network(setting, tuple(widths))


def freeze_points(setting) -> tuple:
    """The setting's ``points`` checked and frozen (hashable: a tuple of ``((key, value), ...)``).

    Raises
    ------
    SpecError
        One line naming the point and the key: an unknown key, a shape that does not fit the network, a
        non-finite or non-numeric value, ``widths`` not among the setting's architectures.
    """
    pts = setting.points
    if isinstance(pts, tuple) and all(isinstance(p, tuple) and p and p[0] == ("frozen", True) for p in pts):
        return pts  # already frozen (dataclasses.replace of a setting)
    if isinstance(pts, Mapping):
        pts = [pts]
    if not isinstance(pts, (list, tuple)):
        raise SpecError(f"setting: points must be a list of dicts (x, y, parameters by name), received "
                        f"{type(pts).__name__}")
    out = []
    for k, p in enumerate(pts, start=1):
        where = f"point {k}"
        if not isinstance(p, Mapping):
            raise SpecError(f"setting: {where}: expected a dict (x, y, parameters by name), received {type(p).__name__}")
        if setting.symbolic and not setting.widths:
            raise SpecError(f"setting: {where}: given points need numeric architectures (widths=... or network=...)")
        widths = None
        if setting.network is None:
            widths = p.get("widths", setting.widths[0])
            if not isinstance(widths, (tuple, list)) or tuple(widths) not in {tuple(w) for w in setting.widths}:
                raise SpecError(f"setting: {where}: widths must be one of the setting's architectures "
                                f"{[tuple(w) for w in setting.widths]}, received {widths!r}")
            widths = tuple(int(n) for n in widths)
        elif "widths" in p:
            raise SpecError(f"setting: {where}: widths applies to dense settings; this setting has network=...")
        try:
            net = point_network(setting, widths)
        except JacobianBPError as exc:
            raise SpecError(f"setting: {where}: {exc}") from None
        items: list = [("frozen", True)]
        if widths is not None:
            items.append(("widths", widths))
        label = p.get("label", where)
        if not isinstance(label, str):
            raise SpecError(f"setting: {where}: label must be a string, received {label!r:.60}")
        items.append(("label", label))
        entries = {e.name: e for e in net.entries}
        X = None
        for key in p:
            if key in ("widths", "label"):
                continue
            if key not in ("x", "y") and key not in entries:
                raise SpecError(f"setting: {where}: unknown key {key!r}; known: x, y, label"
                                f"{', widths' if widths is not None else ''}, {', '.join(net.param_names)}")
            a = _array(p[key], f"{where}: {key}")
            if key in entries and a.shape != tuple(entries[key].user_shape):
                raise SpecError(f"setting: {where}: {key} must have shape {tuple(entries[key].user_shape)} (user layout "
                                f"of convention {net.convention.name!r}), received {a.shape}")
            if key == "x":
                try:
                    Xb, _, _ = net.as_batch(a)
                except JacobianBPError as exc:
                    raise SpecError(f"setting: {where}: x: {exc}") from None
                if net.couples_samples and Xb.shape[0] < 2:
                    raise SpecError(f"setting: {where}: x: a layer couples the samples; give a batch of N >= 2 inputs")
                X = a
            items.append((key, _freeze_array(a)))
        if "y" in p:
            if X is None:
                raise SpecError(f"setting: {where}: y is given without x")
            try:
                net.as_batch(X, _array(p["y"], f"{where}: y"), what="input")
            except JacobianBPError as exc:
                raise SpecError(f"setting: {where}: y: {exc}") from None
        out.append(tuple(items))
    return tuple(out)


def thaw_point(point: tuple) -> dict:
    """A frozen point as a dict: arrays for ``x``, ``y`` and the parameters, ``widths`` and ``label`` as given."""
    out = {}
    for key, v in point:
        if key == "frozen":
            continue
        if isinstance(v, tuple) and v and v[0] == "array":
            out[key] = np.array(v[2], dtype=float).reshape(v[1])
        else:
            out[key] = v
    return out
