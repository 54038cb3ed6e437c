"""Shared check for the models' training kernels: two kernels, the same gradients."""

import torch


def grads_by_kernel(make_model, setter: str, kinds, vocab: int, *, seed: int = 2):
    """The parameter gradients of one cross-entropy step of ``make_model()`` with each kernel
    in ``kinds`` (set by the model method ``setter``), asserted equal; returns the first's."""
    tokens = torch.randint(0, vocab, (3, 12), generator=torch.Generator().manual_seed(seed))
    grads = []
    for kind in kinds:
        m = make_model()
        getattr(m, setter)(kind)
        logits, _ = m(tokens)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), tokens.reshape(-1))
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for other in grads[1:]:
        for name, g in grads[0].items():
            torch.testing.assert_close(other[name], g, rtol=1e-8, atol=1e-10, msg=name)
    return grads[0]
