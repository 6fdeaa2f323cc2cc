"""The known-answer query sets moved to bif.lm.queries (the demo model's example queries come from there, and the
built-in registry, bif.lm.registry, is below this package). This name stays only for bench/trust.py and
bench/interactive.py, which still import from it; new code imports bif.lm.queries."""

from bif.lm.queries import (LDS_PARAPHRASES, TUNING_PARAPHRASES, Paraphrase, demo_conversations,  # noqa: F401
                            paraphrase_queries, source_index)
