"""The cache's layout on disk: the only package that knows file and folder names.

    cache/                                  Store(root)
      runs/<key>/                           RunFiles: one finished (or resumable) run
        request.json                        the RunRequest as computed, with fingerprints (bif.store.request)
        examples.safetensors                token ids and masks of the scored training samples and the queries
        texts.json                          their texts and token strings (for display)
        init.safetensors                    losses at w* (written last of the inputs: marks them done)
        draws.json                          whether the run stores its draws, their size and why
        draws_000.safetensors               one per chain when it does (bif.core.draws)
        state_000.safetensors               one per chain: its last state, so a longer run continues it
        grows_from.json                     in a run that continues a shorter one: which (bif.store.grow)
        chain_000.safetensors               one per chain (bif.core.trace): losses at every draw, sampling loss
        chain_000.partial                   a chain being written (renamed when finished)
        parts/                              only while a distributed run is in progress (bif.dist)
        queries/<qkey>/                     QueryFiles: queries added later (queries.json, examples, chains)
        ranked/                             RankedFiles: the other training texts, ranked afterwards (rows.json...)
        quarantine/                         damaged query sets or ranked texts, set aside by open_run
        lock, COMPLETE, VERIFIED            file lock; sha256 of every file (written last); last verified stamps
      jobs/<id>/                            JobFiles: a background job (bif.service.jobs)
      models/<name>/                        built-in models (bif.lm.builtin)
      uploads/<sha256[:16]><suffix>         training files uploaded in the app
    <any directory>/                        TraceFiles: `bif.core.stream.record`'s chain files and config.json

Every other module asks these classes for paths; none joins a file name by hand. This package imports nothing
else from bif, so every layer may use it: names (markers, per-chain file names), runfiles (a run's folders),
cacheroot (Store, jobs, models, uploads).
"""

from bif.layout.cacheroot import JobFiles, Store, model_config, model_weights
from bif.layout.names import BUILD_INFO, COMPLETE, GROWS_FROM, PARTIAL, VERIFIED, chain_name, draws_name, state_name
from bif.layout.runfiles import AddedSet, QueryFiles, RankedFiles, RunFiles, Sealed, TraceFiles

__all__ = ["AddedSet", "BUILD_INFO", "COMPLETE", "GROWS_FROM", "JobFiles", "PARTIAL", "QueryFiles", "RankedFiles",
           "RunFiles", "Sealed", "Store", "TraceFiles", "VERIFIED", "chain_name", "draws_name", "model_config",
           "model_weights", "state_name"]
