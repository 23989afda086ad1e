"""Model tools: convert, quantize, perplexity, Hub download, benchmarking, file reports, synthetic test models."""
