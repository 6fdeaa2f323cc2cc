"""Packed SGLD minibatches: a batch's sequences laid end to end in rows, so that no work goes to padding.

An SGLD minibatch draws rows at random, so it is padded to its longest row: on the demo texts (mean 31 of up
to 64 tokens) half of what the transformer blocks compute is padding. Packed, the same sequences fill rows of
that width one after another (first fit, longest first); each sequence's position ids restart at 0, which a
HuggingFace causal LM reads as "a new sequence" and masks attention across the boundary. The hidden states of
every real token are then those of the padded batch up to float rounding (the matmuls' shapes differ), so the
minibatch loss and its gradient are too: 1e-6 relative here, and 35 % less time per SGLD step on the demo.

Whether a model computes packed rows this way is checked numerically once per model (`packs_sequences`):
models that ignore position ids, or whose masks do not follow them, are run padded as before.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from bif.core.modelcheck import once_per_model, same_up_to_rounding

WORTH = 0.85  # pack only when it leaves at most this share of the batch's rows (fewer rows: less work)


class Packed(NamedTuple):
    """A batch (B, T) packed into rows (R, T): `input_ids` and `position_ids` (R, T), and `where` (B, T), the flat
    index into R·T of each row's token t (0 for padding: those entries are not to be read)."""

    input_ids: torch.Tensor  # (R, T)
    position_ids: torch.Tensor  # (R, T)
    where: torch.Tensor  # (B, T) long, into the flattened (R·T,) packed rows


def first_fit(lengths: list[int], width: int) -> tuple[list[int], list[int], list[int]]:
    """(row, start) of each sequence when sequences of `lengths`, longest first, go into the first row of `width`
    with room left; and the tokens used per row."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    row, start, used = [0] * len(lengths), [0] * len(lengths), []
    for i in order:
        r = next((k for k, u in enumerate(used) if u + lengths[i] <= width), len(used))
        if r == len(used):
            used.append(0)
        row[i], start[i] = r, used[r]
        used[r] += lengths[i]
    return row, start, used


def pack(input_ids: torch.Tensor, lengths: torch.Tensor, pad_id: int = 0) -> Packed:
    """Pack right-padded `input_ids` (B, T) whose row b holds `lengths[b]` real tokens. Each row's unused tail is a
    sequence of its own (positions from 0), so it never joins the sequence before it."""
    B, T = input_ids.shape
    dev = input_ids.device
    row, start, used = first_fit([int(n) for n in lengths.tolist()], T)
    R = len(used)
    t = torch.arange(T, device=dev)  # (T,)
    real = t[None] < lengths.to(dev)[:, None]  # (B, T)
    where = torch.as_tensor(row, device=dev)[:, None] * T + torch.as_tensor(start, device=dev)[:, None] + t[None]
    where = torch.where(real, where, 0)  # (B, T)
    ids = torch.full((R * T,), pad_id, dtype=input_ids.dtype, device=dev)
    ids[where[real]] = input_ids[real]
    tail = torch.as_tensor(used, device=dev)[:, None]  # (R, 1)
    pos = (t[None] - tail).clamp(min=0).reshape(-1)  # tails count from 0; real tokens are set next
    pos[where[real]] = t[None].expand(B, T)[real]
    return Packed(ids.view(R, T), pos.view(R, T), where)


def right_padded_lengths(inputs: dict, mask: torch.Tensor) -> torch.Tensor | None:
    """Each row's number of real tokens (B,) when `attention_mask` is right padding and every loss position
    predicts a real token; None otherwise (then the batch is not packed)."""
    am = inputs.get("attention_mask")
    if am is None or am.dim() != 2:
        return None
    lengths = am.sum(1)
    T = am.shape[1]
    real = torch.arange(T, device=am.device)[None] < lengths[:, None]  # (B, T)
    if not torch.equal(real, am.bool()) or bool((mask & ~real[:, 1:mask.shape[1] + 1]).any()):
        return None
    return lengths


def worth_packing(model: torch.nn.Module, inputs: dict, mask: torch.Tensor) -> Packed | None:
    """The batch packed, when it is right padded, packing saves enough and the model packs sequences; else None."""
    lengths = right_padded_lengths(inputs, mask)
    if lengths is None or not packs_sequences(model):
        return None
    packed = pack(inputs["input_ids"], lengths)
    return packed if packed.input_ids.shape[0] <= WORTH * lengths.shape[0] else None


def packed_hidden(model: torch.nn.Module, packed: Packed) -> torch.Tensor:
    """The base model's last hidden states of the packed rows, flattened: (R·T, H)."""
    out = model.base_model(input_ids=packed.input_ids, position_ids=packed.position_ids, use_cache=False)
    return out.last_hidden_state.reshape(-1, out.last_hidden_state.shape[-1])


@once_per_model
def packs_sequences(model: torch.nn.Module) -> bool:
    """True when the model's hidden states of two packed sequences equal those of each alone (to 1e-4, or to its
    dtype's rounding for a bfloat16/float16 model; checked once per model, without gradients)."""
    base = getattr(model, "base_model", None)
    if base is None or base is model:
        return False
    dev = next(model.parameters()).device
    V = model.config.vocab_size
    a = (torch.arange(3, 9, device=dev) * 7) % V  # (6,)
    b = (torch.arange(2, 6, device=dev) * 5) % V  # (4,)
    ids = torch.zeros(2, 10, dtype=torch.long, device=dev)  # both fit one row of 10: b starts at 6
    ids[0, :6], ids[1, :4] = a, b
    packed = pack(ids, torch.tensor([6, 4], device=dev))
    alone = [base(input_ids=x[None]).last_hidden_state[0].float() for x in (a, b)]
    got = packed_hidden(model, packed).float()  # (R·10, H)
    dtype = next(model.parameters()).dtype
    return bool(packed.input_ids.shape[0] == 1
                and same_up_to_rounding(got[packed.where[0, :6]], alone[0], dtype)
                and same_up_to_rounding(got[packed.where[1, :4]], alone[1], dtype))
