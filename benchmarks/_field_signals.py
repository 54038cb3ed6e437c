"""What ``field_fit.py`` and its torch peer (``peers/torch_fit.py``) share, so both systems
fit the same points on the same schedule: the sizes of the 3-D signal and the ``--lr-decay``
option. Loads neither numpy nor torch (the scripts pin their threads first)."""

from __future__ import annotations

#: the torus SDF: training points, held-out points, and the side of the z = 0.5 slice saved
TORUS_TRAIN, TORUS_EVAL, SLICE = 2**18, 2**16, 256


def lr_decay(text: str | None):
    """``--lr-decay START,INTERVAL,BASE`` as neurofabric's ``ExponentialDecay`` (None: off)."""
    from neurofabric.field.optim import ExponentialDecay

    return ExponentialDecay.parse(text) if text else None
