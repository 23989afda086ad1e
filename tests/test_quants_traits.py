"""The traits table (quants.traits): every type has every entry, consistent with its block layout; and the
quant floor imports without the tokenizer's dependencies."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from airoboros_ggml.ggml_types import LAYOUTS, WEIGHT_TYPES, GGMLType
from airoboros_ggml.quants import TYPE_TRAITS, traits
from airoboros_ggml.quants.weight import INT_KERNELS

KERNELS = ("dequantize_ref", "quantize", "matvec")


def test_table_covers_every_type_with_its_layout() -> None:
    assert list(TYPE_TRAITS) == list(LAYOUTS) == list(GGMLType)
    for t, tr in TYPE_TRAITS.items():
        lay = LAYOUTS[t]
        assert (tr.ggml_type, tr.block_size, tr.type_size, tr.is_weight) == (t, lay.block_size, lay.type_size,
                                                                             lay.is_weight)
        assert tr.bits_per_weight == lay.bits_per_weight == lay.type_size * 8 / lay.block_size
        assert all(0 <= o <= lay.type_size - 2 for o in lay.f16_offsets)
        assert traits(t.name) is traits(int(t)) is tr
    assert WEIGHT_TYPES == {t for t, tr in TYPE_TRAITS.items() if tr.is_weight}


@pytest.mark.parametrize("t", list(GGMLType), ids=lambda t: t.name)
def test_every_type_has_every_entry(t: GGMLType) -> None:
    tr = TYPE_TRAITS[t]
    if not tr.is_weight:  # activation-only formats: made by the integer kernels' wrappers, no kernels here
        assert all(getattr(tr, k) is None for k in KERNELS + ("activation", "int_matmul"))
        return
    assert all(callable(getattr(tr, k)) for k in KERNELS)
    if tr.block_size == 1:  # F32/F16: products are always exact float32
        assert tr.activation is None and tr.int_matmul is None
        return
    assert tr.activation in (GGMLType.Q8_0, GGMLType.Q8_1, GGMLType.Q8_K)
    act = TYPE_TRAITS[tr.activation]
    assert act.block_size == tr.block_size and act.type_size > 0
    assert callable(tr.int_matmul)
    assert (t in INT_KERNELS) == bool(INT_KERNELS)  # every integer kernel, or none without AVX2


@pytest.mark.parametrize("t", sorted(WEIGHT_TYPES), ids=lambda t: t.name)
def test_block_functions_have_the_layout_shapes(t: GGMLType) -> None:
    tr = TYPE_TRAITS[t]
    x = np.random.default_rng(int(t)).standard_normal((3, tr.block_size)).astype(np.float32)
    q = tr.quantize(x)
    assert q.dtype == np.uint8 and q.shape == (3, tr.type_size)
    d = tr.dequantize_ref(q)
    assert d.dtype == np.float32 and d.shape == (3, tr.block_size)


def test_quants_import_without_sentencepiece() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["sentencepiece"] = None  # any import of it raises ImportError
        import numpy as np
        from airoboros_ggml.quants import dequantize, quantize
        x = np.linspace(-1, 1, 256, dtype=np.float32)
        assert np.abs(dequantize(quantize(x, "Q8_0"), "Q8_0", x.shape) - x).max() < 0.01
        assert "sentencepiece" not in {m for m, v in sys.modules.items() if v is not None}
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
