"""The numerical core: sampler, traces, estimators, diagnostics (no files, no language models)."""
