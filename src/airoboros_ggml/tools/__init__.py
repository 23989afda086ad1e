"""Model tools: convert, quantize, perplexity, Hub download (library functions; the CLI only parses)."""
