"""Several processes (torchrun): chains spread over ranks, scoring sharded, bitwise merge."""
