"""What the sequence models' ``forward`` returns, whatever the arguments."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

__all__ = ["LMOutput"]


class LMOutput(NamedTuple):
    """``(logits, state)`` of :meth:`RWKV4.forward <neurofabric.seq.RWKV4.forward>` and
    :meth:`Mamba.forward <neurofabric.seq.Mamba.forward>`: the logits (B, T, vocab) of every
    position and the recurrent state after the last one (pass it as ``state=`` to continue the
    sequence, or to ``step``). Unpack it (``logits, state = model(tokens)``) or read
    ``.logits``."""

    logits: torch.Tensor
    state: list[Any]
