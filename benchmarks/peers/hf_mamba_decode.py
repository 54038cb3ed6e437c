"""HF transformers' MambaForCausalLM as the peer of benchmarks/seq_decode.py (peers venv).

Reads a JSON job on stdin: {"weights": a safetensors file in HF's layout, "config": {...},
"tokens": [...], "n_tokens": int, "threads": int, "logits_out": path}. Decodes one token per
call with the model's cache (its CPU path: the reference PyTorch conv and scan, as
transformers itself reports when causal_conv1d / mamba_ssm are absent), writes the logits of
every step of ``tokens`` for the parity check, prints one JSON line with tokens/s.
"""

import json
import sys
import time

import numpy as np
import torch
import transformers
from safetensors.torch import load_file
from transformers import MambaConfig, MambaForCausalLM

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
    model = MambaForCausalLM(MambaConfig(**job["config"])).eval()
    missing, unexpected = model.load_state_dict(load_file(job["weights"]), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    with torch.no_grad():
        np.save(job["logits_out"], np.stack(decode(model, job["tokens"])))
        n = job["n_tokens"]
        vocab = job["config"]["vocab_size"]
        seq = [i % vocab for i in range(n + 1)]
        t0 = time.perf_counter()
        decode(model, seq)
        secs = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "tokens_per_s": n / secs,
                "version": transformers.__version__,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
