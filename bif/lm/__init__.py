"""Language models and text data: loading, tokenizing, the demo corpus and built-in models."""
