"""Constants shared by the reference and numba kernels: record layout, rule codes, text tables."""

from __future__ import annotations

import numpy as np

#: One neuron: 16 bytes, aligned. ``target``/``weight`` hold a neuron's only synapse; a neuron
#: with several targets has ``target == FANOUT`` and its synapses in the field's CSR arrays.
NEURON_DTYPE = np.dtype(
    [("potential", "<f4"), ("threshold", "<f4"), ("target", "<u4"), ("weight", "<f4")],
    align=True,
)
assert NEURON_DTYPE.itemsize == 16

FANOUT = np.uint32(0xFFFFFFFF)  # synapses in CSR
SILENT = np.uint32(0xFFFFFFFE)  # no synapse at all

RULES = ("perceptron", "pa1", "pa2", "neuronguard")
RULE_CODE = {name: i for i, name in enumerate(RULES)}
PERCEPTRON, PA1, PA2, NEURONGUARD = range(4)

#: how parameter mixing moves the shared weights (``GuardParams.mix``)
MIXES = ("mean", "sum", "changed")
MIX_CODE = {name: i for i, name in enumerate(MIXES)}
MIX_MEAN, MIX_SUM, MIX_CHANGED = range(3)

# --- text: fastText's normalize_text (classification-example.sh), byte by byte -------------
# 0 a byte of a word, 1 a separator (whitespace, ';', ':'), 2 a one-byte token
# (' . , ( ) ! ?), 3 deleted without splitting (").
WORD, SEPARATOR, SINGLE, DELETED = 0, 1, 2, 3
SEPARATORS = b" \t\n\r\x0b\x0c;:"
SINGLES = b"'.,()!?"
DELETES = b'"'
BREAK = b"<br />"


def _char_class() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint8)
    for b in SEPARATORS:
        table[b] = SEPARATOR
    for b in SINGLES:
        table[b] = SINGLE
    for b in DELETES:
        table[b] = DELETED
    return table


CHAR_CLASS = _char_class()
LOWER = np.arange(256, dtype=np.uint8)
LOWER[ord("A") : ord("Z") + 1] += 32
BREAK_BYTES = np.frombuffer(BREAK, dtype=np.uint8).copy()

# --- hashing: FNV-1a 64 over a token's bytes, fastText's n-gram combiner, murmur3's fmix64 ---
FNV_OFFSET = 14695981039346656037
FNV_PRIME = 1099511628211
NGRAM_MULT = 116049371  # fastText's Dictionary::addWordNgrams
CHAR_SALT = 0x9E3779B97F4A7C15  # keeps character n-grams off the word hashes
MASK64 = (1 << 64) - 1
