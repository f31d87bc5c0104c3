"""Test cases as data (issue #12): every registered layer × every preset × every backend.

A case is a small JSON spec that puts one registered layer family in context (an activation between two
dense layers, a pooling layer behind a convolution, …) under one convention preset, plus the backend that
computes the quantity.  ``tests/test_contract.py`` runs every case against the independent oracles:
PyTorch autograd through ``tests/torch_twin.py`` (written from first principles, not from the package's own
oracle) and float64 central differences.  A new layer is covered by registering it and giving it an
entry in :data:`CONTEXTS` (``test_every_registered_layer_has_a_case`` fails until it has one).
"""
from __future__ import annotations

from dataclasses import dataclass

from jacobian_bp.engine.conventions import PRESETS

#: backends: how the quantity is computed
BACKENDS = ("chain", "operator", "per_sample", "dense_theta", "sparse_theta", "dense_input")

_DENSE_IN = 4


def _mlp(layer: dict, last: str = "softmax", loss: str = "cross_entropy") -> dict:
    return {"input": _DENSE_IN, "layers": [{"type": "dense", "out_features": 3}, layer,
                                           {"type": "dense", "out_features": 3}, {"type": last}], "loss": loss}


def _cnn(layer: dict) -> dict:
    return {"input": [1, 6, 6], "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
                                           {"type": "tanh"}, layer, {"type": "flatten"},
                                           {"type": "dense", "out_features": 3}, {"type": "softmax"}],
            "loss": "cross_entropy"}


#: how each registered layer family is put in context (one or more specs without convention/data)
CONTEXTS: dict[str, list[dict]] = {
    "dense": [_mlp({"type": "tanh"}), _mlp({"type": "sigmoid"}, last="sigmoid", loss="bce")],
    "identity": [_mlp({"type": "identity"}, last="identity", loss="mse")],
    "relu": [_mlp({"type": "relu"})],
    "leaky_relu": [_mlp({"type": "leaky_relu", "negative_slope": 0.1})],
    "sigmoid": [_mlp({"type": "sigmoid"}, last="sigmoid", loss="bce")],
    "tanh": [_mlp({"type": "tanh"}, last="identity", loss="mse")],
    "arctan": [_mlp({"type": "arctan"})],
    "softplus": [_mlp({"type": "softplus"})],
    "elu": [_mlp({"type": "elu", "alpha": 0.7})],
    "gelu": [_mlp({"type": "gelu"}), _mlp({"type": "gelu", "approximate": "tanh"})],
    "softmax": [_mlp({"type": "softmax"})],
    "radial_sigmoid": [_mlp({"type": "radial_sigmoid"})],
    "conv2d": [_cnn({"type": "relu"}), _cnn({"type": "conv2d", "out_channels": 2, "kernel_size": 2, "stride": 2,
                                            "mode": "convolution", "bias": "untied"})],
    "maxpool2d": [_cnn({"type": "maxpool2d", "kernel_size": 2})],
    "avgpool2d": [_cnn({"type": "avgpool2d", "kernel_size": 2})],
    "flatten": [_cnn({"type": "identity"})],
    "layer_norm": [
        {"input": _DENSE_IN, "layers": [{"type": "dense", "out_features": 5}, {"type": "layer_norm"}, {"type": "tanh"},
                                        {"type": "dense", "out_features": 3}, {"type": "softmax"}], "loss": "cross_entropy"},
        _mlp({"type": "layer_norm", "eps": 0.01, "affine": False}),
    ],
    "batch_norm_eval": [
        {"input": _DENSE_IN, "layers": [{"type": "dense", "out_features": 3},
                                        {"type": "batch_norm_eval", "running_mean": [1, 0, -1], "running_var": [2, 1, 3]},
                                        {"type": "tanh"}, {"type": "dense", "out_features": 3}, {"type": "softmax"}],
         "loss": "cross_entropy"},
        _mlp({"type": "batch_norm_eval", "affine": False, "eps": 0.5}),
    ],
    # training mode: the samples are coupled (tests/test_contract.py compares batch Jacobians, per-sample routes refuse)
    "batch_norm": [
        {"input": _DENSE_IN, "layers": [{"type": "dense", "out_features": 5}, {"type": "batch_norm"}, {"type": "tanh"},
                                        {"type": "dense", "out_features": 3}, {"type": "softmax"}], "loss": "cross_entropy"},
        _mlp({"type": "batch_norm", "affine": False, "eps": 0.1}),
        {"input": _DENSE_IN, "layers": [{"type": "dense", "out_features": 5}, {"type": "tanh"}, {"type": "dense", "out_features": 3},
                                        {"type": "batch_norm", "eps": 0.01}], "loss": "mse"},
    ],
    "residual": [
        {"input": _DENSE_IN, "layers": [
            {"type": "dense", "out_features": 4},
            {"type": "residual", "body": [{"type": "dense", "out_features": 4}, {"type": "tanh"},
                                          {"type": "dense", "out_features": 4}]},
            {"type": "relu"}, {"type": "dense", "out_features": 3}, {"type": "softmax"}], "loss": "cross_entropy"},
        {"input": [1, 5, 5], "layers": [
            {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
            {"type": "residual", "body": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
                                          {"type": "sigmoid"}]},
            {"type": "flatten"}, {"type": "dense", "out_features": 3}, {"type": "softmax"}], "loss": "cross_entropy"},
    ],
    # recurrent layers (a sequence [T, d] per sample): the last state into a classifier, every state flattened
    "rnn": [
        {"input": [4, 3], "layers": [{"type": "rnn", "hidden_size": 3}, {"type": "dense", "out_features": 3},
                                     {"type": "softmax"}], "loss": "cross_entropy"},
        {"input": [3, 2], "layers": [{"type": "rnn", "hidden_size": 2, "output": "all"}, {"type": "flatten"},
                                     {"type": "dense", "out_features": 2}, {"type": "identity"}], "loss": "mse"},
    ],
    "lstm": [
        {"input": [4, 2], "layers": [{"type": "lstm", "hidden_size": 3}, {"type": "dense", "out_features": 3},
                                     {"type": "softmax"}], "loss": "cross_entropy"},
        {"input": [3, 2], "layers": [{"type": "lstm", "hidden_size": 2, "output": "all"}, {"type": "flatten"},
                                     {"type": "dense", "out_features": 3}, {"type": "softmax"}], "loss": "cross_entropy"},
    ],
    # sequence layers (a sequence [T, d] per sample): token-wise linear, self-attention, the Transformer block
    "linear": [
        {"input": [3, 4], "layers": [{"type": "linear", "out_features": 5}, {"type": "gelu"}, {"type": "layer_norm"},
                                     {"type": "flatten"}, {"type": "dense", "out_features": 3}, {"type": "softmax"}],
         "loss": "cross_entropy"},
    ],
    "self_attention": [
        {"input": [3, 4], "layers": [{"type": "self_attention", "heads": 2}, {"type": "flatten"},
                                     {"type": "dense", "out_features": 3}, {"type": "softmax"}], "loss": "cross_entropy"},
        {"input": [3, 2], "layers": [{"type": "linear", "out_features": 4},
                                     {"type": "self_attention", "heads": 1, "causal": True, "bias": False},
                                     {"type": "tanh"}, {"type": "flatten"}, {"type": "dense", "out_features": 2},
                                     {"type": "identity"}], "loss": "mse"},
        {"input": [3, 4], "layers": [
            {"type": "residual", "body": [{"type": "layer_norm"}, {"type": "self_attention", "heads": 2}]},
            {"type": "residual", "body": [{"type": "layer_norm"}, {"type": "linear", "out_features": 6}, {"type": "gelu"},
                                          {"type": "linear", "out_features": 4}]},
            {"type": "flatten"}, {"type": "dense", "out_features": 3}, {"type": "softmax"}], "loss": "cross_entropy"},
    ],
    "transformer_block": [
        {"input": [3, 4], "layers": [{"type": "transformer_block", "heads": 2, "mlp_hidden": 6}, {"type": "flatten"},
                                     {"type": "dense", "out_features": 3}, {"type": "softmax"}], "loss": "cross_entropy"},
        {"input": [2, 2], "layers": [{"type": "transformer_block", "heads": 1, "causal": True, "activation": "tanh"},
                                     {"type": "flatten"}], "loss": "mse"},
    ],
}


@dataclass(frozen=True)
class Case:
    layer: str
    variant: int
    preset: str
    backend: str
    batch: int

    @property
    def id(self) -> str:
        return f"{self.layer}{self.variant}-{self.preset}-{self.backend}-N{self.batch}"

    def spec(self) -> dict:
        s = dict(CONTEXTS[self.layer][self.variant])
        s["convention"] = self.preset
        s["data"] = {"seed": 1, "batch": self.batch}
        s["params"] = {"seed": 2}
        s["name"] = self.id
        return s


def cases() -> list[Case]:
    out = []
    for layer in sorted(CONTEXTS):
        for variant in range(len(CONTEXTS[layer])):
            for preset in sorted(PRESETS):
                for k, backend in enumerate(BACKENDS):
                    batch = 1 if backend.endswith(("_theta", "_input")) else 1 + (k + variant) % 3
                    out.append(Case(layer, variant, preset, backend, batch))
    return out


def registered_layers() -> set[str]:
    """Every spec name in the one layer registry (the lazily loaded families included)."""
    from jacobian_bp.layers.registry import all_layer_classes

    return set(all_layer_classes())
