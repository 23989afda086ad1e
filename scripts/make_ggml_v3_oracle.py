"""Make the GGML v3 oracle fixture (issue 15): a small Llama GGUF and ctransformers' logits on its GGJT v3 twin.

1. ``tests/data/ggml-v3-oracle.gguf``, written with gguf-py's ``GGUFWriter`` (not our writer): a 2-layer
   Llama, 256 wide, 4 heads (ctransformers refuses GQA below 70B), n_ff 768, the first 512 pieces of the real
   Llama-2 SentencePiece vocabulary, every weight type of GGML v3 somewhere (F32, F16, Q4_0, Q4_1, Q5_0,
   Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K). Weights are Gaussian, quantized with gguf-py's quantizers
   where it has them (legacy types) and ours for the K-quants (the data only has to be valid).
2. The GGJT v3 file made from it by ``tests/ggjt_oracle.py`` (gguf-py + struct, no airoboros_ggml code).
3. ``tests/data/ggml-v3-oracle-ctransformers.json``: ctransformers 0.2.27 (llama.cpp of August 2023, which
   reads GGJT v3) evaluating token sequences one token at a time, the logits after each token; its
   tokenization of the prompt texts; the GGJT file's SHA-256, so the test knows it rebuilt the same bytes.

ctransformers is a test-data oracle only, never a dependency:

    pip install ctransformers==0.2.27
    python scripts/make_ggml_v3_oracle.py
"""

import json
import sys
import tempfile
from pathlib import Path

import gguf
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
sys.path.insert(0, str(ROOT / "tests"))

import ggjt_oracle  # noqa: E402

GGUF_OUT = DATA / "ggml-v3-oracle.gguf"
GOLDEN_OUT = DATA / "ggml-v3-oracle-ctransformers.json"
T = gguf.GGMLQuantizationType
# matrix -> type: every GGML v3 weight type appears at least once
TYPES = {
    "token_embd.weight": T.Q4_K,
    "output.weight": T.Q6_K,
    "blk.0.attn_q.weight": T.Q4_0, "blk.0.attn_k.weight": T.Q4_1, "blk.0.attn_v.weight": T.Q5_0,
    "blk.0.attn_output.weight": T.Q5_1, "blk.0.ffn_gate.weight": T.Q8_0, "blk.0.ffn_up.weight": T.Q2_K,
    "blk.0.ffn_down.weight": T.Q3_K,
    "blk.1.attn_q.weight": T.F16, "blk.1.attn_k.weight": T.F32, "blk.1.attn_v.weight": T.Q4_K,
    "blk.1.attn_output.weight": T.Q5_K, "blk.1.ffn_gate.weight": T.Q6_K, "blk.1.ffn_up.weight": T.Q3_K,
    "blk.1.ffn_down.weight": T.Q2_K,
}
K_QUANTS = (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K)
TEXTS = [
    "The capital of France is Paris",
    "Once upon a time, there was a girl",
]


def encode(values: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    """gguf-py's quantizers, ours for the K-quants (gguf-py has none; the data only has to be valid)."""
    if qtype in K_QUANTS:
        from airoboros_ggml.quants import quantize

        return quantize(values, int(qtype))
    return ggjt_oracle.gguf_encode(values, qtype)


def ctransformers_logits(ggjt: Path) -> dict:
    from ctransformers import AutoModelForCausalLM

    llm = AutoModelForCausalLM.from_pretrained(str(ggjt), model_type="llama", context_length=256, threads=2,
                                               gpu_layers=0)
    assert llm.vocab_size == 512
    cases = []
    for text in TEXTS:
        # llama.cpp of 2023 tokenized without SentencePiece's dummy-prefix space; `main` prepended one
        ids = [1] + llm.tokenize(" " + text, add_bos_token=False)
        llm.reset()
        rows = []
        for tok in ids:
            llm.eval([tok])
            rows.append([round(float(x), 4) for x in llm.logits])
        cases.append({"text": text, "ids": ids, "logits": rows})
        print(f"{text[:40]!r}: {len(ids)} tokens, argmax {[int(np.argmax(r)) for r in rows]}")
    return {"cases": cases}


def main() -> None:
    vocab = ggjt_oracle.read_vocab(ggjt_oracle.LLAMA2_VOCAB, 512)
    ggjt_oracle.write_llama_gguf(GGUF_OUT, vocab, types=TYPES.__getitem__, encode=encode)
    with tempfile.TemporaryDirectory() as tmp:
        ggjt = ggjt_oracle.convert_gguf_to_ggjt(GGUF_OUT, Path(tmp) / "oracle.ggmlv3.bin")
        golden = {
            "engine": "ctransformers 0.2.27 (llama.cpp, August 2023), CPU, 2 threads, one token per eval",
            "ggjt_sha256": ggjt_oracle.sha256(ggjt),
            "gguf_sha256": ggjt_oracle.sha256(GGUF_OUT),
            **ctransformers_logits(ggjt),
        }
    GOLDEN_OUT.write_text(json.dumps(golden) + "\n")
    print(f"wrote {GGUF_OUT} ({GGUF_OUT.stat().st_size} bytes) and {GOLDEN_OUT}")


if __name__ == "__main__":
    main()
