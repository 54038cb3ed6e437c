"""What the sequence models' ``forward`` returns, whatever the arguments."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

__all__ = ["LMOutput", "check_tokens"]


class LMOutput(NamedTuple):
    """``(logits, state)`` of :meth:`RWKV4.forward <neurofabric.seq.RWKV4.forward>` and
    :meth:`Mamba.forward <neurofabric.seq.Mamba.forward>`: the logits (B, T, vocab) of every
    position and the recurrent state after the last one (pass it as ``state=`` to continue the
    sequence, or to ``step``). Unpack it (``logits, state = model(tokens)``) or read
    ``.logits``."""

    logits: torch.Tensor
    state: list[Any]


def check_tokens(tokens: torch.Tensor, vocab_size: int) -> None:
    """Integer token ids in ``[0, vocab_size)``, or a :class:`ShapeError` saying which."""
    from neurofabric.core.errors import ShapeError

    if tokens.dtype not in (torch.int64, torch.int32):
        raise ShapeError(f"tokens must be integer ids, got dtype {tokens.dtype}")
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ShapeError(
            f"token ids must lie in [0, {vocab_size}), got "
            f"[{int(tokens.min())}, {int(tokens.max())}]"
        )
