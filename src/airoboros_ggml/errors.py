"""Exceptions raised by airoboros-ggml."""

from __future__ import annotations


class ModelFormatError(ValueError):
    """A model file cannot be read: wrong kind of file, unsupported version, or damaged.

    The message names the file, says what it is and what to do about it.
    """


class ContextOverflowError(ValueError):
    """A prompt (plus what must be generated) does not fit in the model's context window."""

    def __init__(self, n_prompt_tokens: int, n_ctx: int, message: str | None = None):
        self.n_prompt_tokens = n_prompt_tokens
        self.n_ctx = n_ctx
        super().__init__(
            message
            or f"prompt is {n_prompt_tokens} tokens but the context window is {n_ctx} tokens; "
            "shorten the prompt or load the model with a larger n_ctx"
        )


class GrammarError(ValueError):
    """A grammar, JSON schema, regex, response format or tool definition cannot constrain generation.

    Raised before any token is evaluated; the message names the problem (for grammars and schemas, the
    grammar engine's own message). The model stays usable.
    """


class ConversionError(ValueError):
    """A model cannot be converted or quantized as asked: the target format or type cannot hold it.

    The message says what does not fit and what to do instead.
    """


class OutputFileError(OSError):
    """An output file cannot be written (read-only directory, disk full, ...); nothing was left behind."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class DownloadError(RuntimeError):
    """A model file cannot be fetched from the Hugging Face Hub (extra not installed, offline, not found)."""
