"""Kernels of the sequence models: ``reference`` (numpy loops, the spec), ``numba_cpu`` (the
fused decoding steps and the selective scan) and ``torch_ops`` (the models' WKV in torch).

``reference`` and ``numba_cpu`` are registered with :mod:`neurofabric.core.backend` as engine
"seq" (by module path, so nothing is compiled or imported until a backend is resolved): the
decoders of :mod:`neurofabric.seq.decode` and Mamba's scan resolve their backend there.
"""

from __future__ import annotations

from neurofabric.core import backend as _backends

_backends.register("seq", "reference", "neurofabric.seq.kernels.reference")
_backends.register("seq", "numba", "neurofabric.seq.kernels.numba_cpu", requires="numba")


def resolve_training_kernel(param: str, value: str, device, torch_form: str, setter: str) -> str:
    """The training kernel a model's ``param`` ("auto", "numba" or ``torch_form``) runs on
    ``device``: "auto" is numba on CPU tensors when numba is installed, else the torch form;
    an explicit "numba" off the CPU, or without numba, raises
    :class:`~neurofabric.core.errors.BackendUnavailableError` (tensors are never copied to
    numpy behind the caller's back). ``setter`` names the model method that changes it."""
    import torch

    from neurofabric.core.errors import BackendUnavailableError
    from neurofabric.core.validation import check_choice

    check_choice(param, value, ("auto", "numba", torch_form))
    kind = torch.device(device).type
    if value == torch_form:
        return torch_form
    if value == "numba":
        if kind != "cpu":
            raise BackendUnavailableError(
                f"`{param}` is 'numba', whose kernels run on CPU tensors only, but the model is "
                f"on {device}; use {param}='auto' (the {torch_form} torch form off the CPU) or "
                f"'{torch_form}' (on a built model: model.{setter}('auto')), or move the model "
                f"to the CPU"
            )
        _backends.resolve("seq", "numba")  # BackendUnavailableError with the install hint
        return "numba"
    return "numba" if kind == "cpu" and "numba" in _backends.available("seq") else torch_form
