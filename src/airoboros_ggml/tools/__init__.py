"""Model tools: benchmarking, model-file reports and synthetic test models (library functions)."""
