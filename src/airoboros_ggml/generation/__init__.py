"""Generation: sampling options, the sampler chain, stop strings, prompt templates and result types."""
