"""HF transformers' Mamba2ForCausalLM as the peer of benchmarks/seq_decode.py (peers venv).

Reads a JSON job on stdin: {"weights": a safetensors file in HF's layout, "config": {...},
"tokens": [...], "n_tokens": int (0: no timing), "threads": int, "logits_out": path,
"forward": [[...], ...] (optional: a batch of sequences), "forward_out": path}. Decodes one
token per call with the model's cache (its CPU path: the reference PyTorch conv and SSD, as
transformers uses when causal_conv1d / mamba_ssm are absent) and writes the logits of every
step of ``tokens``; with "forward", also the logits of one full forward pass over the batch (the
chunked SSD form). Prints one JSON line with tokens/s.
"""

import json
import sys
import time

import numpy as np
import torch
import transformers
from safetensors.torch import load_file
from transformers import Mamba2Config, Mamba2ForCausalLM

transformers.logging.set_verbosity_error()


def decode(model, tokens):
    out = model(torch.tensor([[tokens[0]]]), use_cache=True)
    cache = out.cache_params
    logits = [out.logits[0, -1].numpy()]
    for i, t in enumerate(tokens[1:], start=1):
        out = model(
            torch.tensor([[t]]),
            cache_params=cache,
            use_cache=True,
            cache_position=torch.tensor([i]),
        )
        cache = out.cache_params
        logits.append(out.logits[0, -1].numpy())
    return logits


def main() -> None:
    job = json.load(sys.stdin)
    torch.set_num_threads(job.get("threads", 1))
    model = Mamba2ForCausalLM(Mamba2Config(**job["config"])).eval()
    missing, unexpected = model.load_state_dict(load_file(job["weights"]), strict=False)
    allowed = {"lm_head.weight"} if job["config"].get("tie_word_embeddings") else set()
    assert not unexpected and set(missing) <= allowed, (missing, unexpected)
    if job["config"].get("tie_word_embeddings"):
        model.tie_weights()
    with torch.no_grad():
        np.save(job["logits_out"], np.stack(decode(model, job["tokens"])))
        if job.get("forward"):
            logits = model(torch.tensor(job["forward"])).logits
            np.save(job["forward_out"], logits.numpy())
        n = job["n_tokens"]
        secs = float("nan")
        if n:
            vocab = job["config"]["vocab_size"]
            seq = [i % vocab for i in range(n + 1)]
            t0 = time.perf_counter()
            decode(model, seq)
            secs = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "tokens_per_s": n / secs if n else None,
                "version": transformers.__version__,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
