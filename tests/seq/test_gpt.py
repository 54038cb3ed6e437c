"""The GPT baseline: the KV-cache step against the whole-sequence forward, the sliding
window, its cache size, training, saving and generation like the recurrent models."""

import numpy as np
import pytest
import torch

from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.seq.gpt import GPT, GPTConfig
from neurofabric.seq.io import load_model, save_model


def small(**kw):
    cfg = {"vocab_size": 13, "n_layer": 2, "n_embd": 16, "n_head": 4, "block_size": 12} | kw
    return GPT(GPTConfig(**cfg), seed=1).eval()


def test_step_with_a_kv_cache_equals_the_forward_pass():
    m = small()
    tokens = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6, 5, 3]])
    with torch.no_grad():
        want = m(tokens).logits[0]
        state = m.init_state(1)
        got = []
        for t in tokens[0]:
            logits, state = m.step(t[None], state)
            got.append(logits[0])
    torch.testing.assert_close(torch.stack(got), want, rtol=1e-5, atol=1e-5)
    cache, seen = state
    assert seen.shape == (1, 10) and cache[0][0].shape == (1, 4, 10, 4)


def test_past_the_block_the_window_slides_to_the_last_block_size_tokens():
    m = small(block_size=6)
    tokens = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6, 5]])
    with torch.no_grad():
        state = m.init_state(1)
        for t in tokens[0]:
            logits, state = m.step(t[None], state)
        want = m(tokens[:, -6:]).logits[0, -1]  # what the last 6 tokens give
    torch.testing.assert_close(logits[0], want, rtol=1e-5, atol=1e-5)
    assert state[1].shape == (1, 6)
    with pytest.raises(ShapeError, match="block_size = 6"):
        m(tokens)


def test_the_cache_grows_by_two_vectors_per_layer_and_token():
    m = small()
    assert m.cache_bytes_per_token() == 2 * 2 * 16 * 4
    with torch.no_grad():
        state = m.init_state(1)
        sizes = []
        for t in range(5):
            _, state = m.step(torch.tensor([t]), state)
            sizes.append(sum(k.nbytes + v.nbytes for k, v in state[0]))
    assert np.diff(sizes).tolist() == [m.cache_bytes_per_token()] * 4


def test_config_is_checked_and_init_is_seeded_without_global_state():
    with pytest.raises(ConfigError, match="multiple of `n_head`"):
        GPTConfig(n_embd=10, n_head=4)
    with pytest.raises(ConfigError, match="n_layer"):
        GPTConfig(n_layer=0)
    torch.manual_seed(0)
    a = small().wte.weight.clone()
    torch.manual_seed(99)
    assert torch.equal(small().wte.weight, a)
    assert not torch.equal(GPT(GPTConfig(13, 2, 16, 4, 12), seed=2).wte.weight, a)


def test_trains_with_the_shared_trainer_saves_loads_and_generates(tmp_path):
    from neurofabric.seq.generate import generate
    from neurofabric.seq.io import build_model
    from neurofabric.seq.train import TextData, TrainConfig, Trainer

    data = TextData.from_text("abcabcabcabd " * 40)
    m = build_model(
        "gpt", {"vocab_size": data.vocab_size, "n_layer": 1, "n_embd": 16, "block_size": 16}
    )
    cfg = TrainConfig(max_steps=60, batch_size=8, seq_len=16, lr=1e-2, eval_every=30)
    before = Trainer(m, data, cfg).evaluate()
    res = Trainer(m, data, cfg, out_dir=tmp_path / "run").fit()
    assert res["val_loss"] < 0.5 * before
    save_model(m, tmp_path / "gpt")
    back = load_model(tmp_path / "gpt").eval()
    assert isinstance(back, GPT) and back.config == m.config
    x = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(back(x).logits, m.eval()(x).logits)
    pieces = list(generate(back, data.tokenizer, "abc", max_new_tokens=40, seed=0))
    assert len(pieces) == 40  # longer than block_size: the window slid
    assert "abc" in "".join(pieces)  # it learned the text


def test_init_is_nanogpts():
    m = GPT(GPTConfig(vocab_size=50, n_layer=2, n_embd=64, n_head=4, block_size=8), seed=0)
    m.requires_grad_(False)
    assert float(m.blocks[0]["qkv"].weight.std()) == pytest.approx(0.02, rel=0.05)
    for name in ("proj", "out"):  # residual projections scaled by 1 / sqrt(2 n_layer)
        assert float(m.blocks[1][name].weight.std()) == pytest.approx(0.01, rel=0.05)
    assert float(m.blocks[0]["fc"].bias.abs().max()) == 0.0
