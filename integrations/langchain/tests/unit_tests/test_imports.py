import langchain_airoboros_ggml


def test_public_names():
    assert sorted(langchain_airoboros_ggml.__all__) == [
        "AiroborosGGML",
        "AiroborosGGMLEmbeddings",
        "ChatAiroborosGGML",
        "__version__",
    ]
    assert langchain_airoboros_ggml.__version__ == "0.1.0"
