"""Tests added for mutants that survived mutation testing (docs/testing.md): the models'
initializations against the formulas they follow (RWKV-LM v4's ``RWKV_TimeMix`` /
``RWKV_ChannelMix`` and Mamba's dt initialization), written out here independently."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neurofabric.seq import RWKV4, Mamba, MambaConfig, RWKVConfig  # noqa: E402


def test_rwkv_initialization_follows_rwkv_lm_v4():
    L, C = 4, 8
    model = RWKV4(RWKVConfig(vocab_size=16, n_layer=L, n_embd=C, ffn_mult=2), seed=0)
    for i, block in enumerate(model.blocks):
        r01, r10 = i / (L - 1), 1.0 - i / L
        att, ffn = block.att, block.ffn
        decay = [-5 + 8 * (h / (C - 1)) ** (0.7 + 1.3 * r01) for h in range(C)]
        first = [math.log(0.3) + ((h + 1) % 3 - 1) * 0.5 for h in range(C)]
        ddd = np.arange(C) / C
        expected = {
            "time_decay": (att.time_decay, decay),
            "time_first": (att.time_first, first),
            "time_mix_k": (att.time_mix_k, ddd**r10),
            "time_mix_v": (att.time_mix_v, ddd**r10 + 0.3 * r01),
            "time_mix_r": (att.time_mix_r, ddd ** (0.5 * r10)),
            "ffn.time_mix_k": (ffn.time_mix_k, ddd**r10),
            "ffn.time_mix_r": (ffn.time_mix_r, ddd**r10),
        }
        for name, (got, want) in expected.items():
            np.testing.assert_allclose(
                got.detach().numpy(), want, rtol=1e-6, atol=1e-6, err_msg=f"layer {i} {name}"
            )
        # decay speeds run from -5 to 3 in every layer
        assert att.time_decay[0].item() == pytest.approx(-5.0)
        assert att.time_decay[-1].item() == pytest.approx(3.0)


def test_mamba_dt_starts_log_uniform_in_its_range():
    cfg = MambaConfig(vocab_size=16, n_layer=2, d_model=256, d_state=4, scan="chunked")
    model = Mamba(cfg, seed=0)
    for layer in model.layers:
        dt = torch.nn.functional.softplus(layer.mixer.dt_proj.bias.detach().double()).numpy()
        assert dt.shape == (cfg.d_inner,)
        assert np.all((dt >= 1e-3 * (1 - 1e-4)) & (dt <= 1e-1 * (1 + 1e-4)))
        # log-uniform over two decades: 512 draws reach near both ends, median near 1e-2
        assert dt.min() < 1.1e-3 and dt.max() > 0.09
        assert abs(np.median(np.log10(dt)) + 2) < 0.15
