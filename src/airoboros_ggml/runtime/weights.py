"""Llama weights bound to the kernels: every matrix a zero-copy :class:`WeightMatrix` over the file."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ModelFormatError
from ..formats import ModelFile, gguf_to_ggml
from ..formats.tensor_names import layer_name
from ..ggml_types import GGMLType
from ..quants import WeightMatrix, dequantize, prepare_weight


@dataclasses.dataclass
class LayerWeights:
    """One transformer block."""

    attn_norm: np.ndarray  # float32 (n_embd,)
    wq: WeightMatrix  # (n_embd, n_embd)
    wk: WeightMatrix  # (n_embd_kv, n_embd)
    wv: WeightMatrix  # (n_embd_kv, n_embd)
    wo: WeightMatrix  # (n_embd, n_embd)
    ffn_norm: np.ndarray  # float32 (n_embd,)
    w_gate: WeightMatrix  # (n_ff, n_embd)
    w_up: WeightMatrix  # (n_ff, n_embd)
    w_down: WeightMatrix  # (n_embd, n_ff)


MATRIX_ROLES = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")
"""The :class:`LayerWeights` fields that are weight matrices, in evaluation order."""


@dataclasses.dataclass
class LlamaWeights:
    """All weights of a Llama model; file tensor names are mapped to attributes here and only here."""

    token_embd: WeightMatrix  # (n_vocab, n_embd)
    output_norm: np.ndarray  # float32 (n_embd,)
    output: WeightMatrix  # (n_vocab, n_embd); the embedding itself when tied
    layers: list[LayerWeights]

    @classmethod
    def from_model_file(cls, model_file: ModelFile, quantized_activations: bool = False) -> LlamaWeights:
        """Bind every tensor of a checked Llama file (the file must stay open while the weights are used).

        ``quantized_activations``: matrices multiply single tokens through 8-bit activations (see
        :class:`~airoboros_ggml.quants.WeightMatrix`); False keeps every product exact float32.
        """
        if not model_file.tensors:
            raise ModelFormatError(
                f"{model_file.path}: this file holds only a vocabulary, no weights; it can be used for "
                "tokenization but not for generation"
            )
        rename = gguf_to_ggml if model_file.format.startswith("ggjt") else (lambda n: n)

        def matrix(name: str) -> WeightMatrix:
            t = model_file.tensors[rename(name)]
            return prepare_weight(t.rows, t.ggml_type, t.shape[-1], quantized_activations)

        def vector(name: str) -> np.ndarray:
            t = model_file.tensors[rename(name)]
            if t.ggml_type == GGMLType.F32:
                return t.data.view(np.float32)
            return dequantize(t.data, t.ggml_type, t.shape)

        layers = [
            LayerWeights(
                attn_norm=vector(layer_name(i, "attn_norm.weight")),
                wq=matrix(layer_name(i, "attn_q.weight")),
                wk=matrix(layer_name(i, "attn_k.weight")),
                wv=matrix(layer_name(i, "attn_v.weight")),
                wo=matrix(layer_name(i, "attn_output.weight")),
                ffn_norm=vector(layer_name(i, "ffn_norm.weight")),
                w_gate=matrix(layer_name(i, "ffn_gate.weight")),
                w_up=matrix(layer_name(i, "ffn_up.weight")),
                w_down=matrix(layer_name(i, "ffn_down.weight")),
            )
            for i in range(model_file.hparams.n_layer)
        ]
        token_embd = matrix("token_embd.weight")
        tied = rename("output.weight") not in model_file.tensors
        return cls(
            token_embd=token_embd,
            output_norm=vector("output_norm.weight"),
            output=token_embd if tied else matrix("output.weight"),
            layers=layers,
        )
