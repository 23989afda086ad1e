"""Generation: options, logits processors, sampler chain, step generator, text chunks, templates, results.

Layers (mlx-lm's ``generate_step`` -> ``stream_generate`` -> ``generate``): :mod:`.steps` chooses and yields
tokens over the KV cache (logits processors from :mod:`.processors`, then the sampler chain from
:mod:`.sampling`); :mod:`.text_stream` turns tokens into text chunks; ``Model.stream``/``complete``/``chat``
add the prompt, the lock and timings on top.
"""
