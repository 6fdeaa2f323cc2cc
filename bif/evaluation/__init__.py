"""Evidence for BIF: LDS against real retraining, baselines (gradient similarity, TracIn, EK-FAC), known-answer
retrieval, reproducibility across seeds. Run `python -m bif.evaluation -h`."""
