"""Codes shared by the kernel backends (plain ints, so numba sees them as constants)."""

ACT_RELU = 0
ACT_TANH = 1
ACT_SIGMOID = 2
ACT_IDENTITY = 3
ACTIVATIONS = {"relu": ACT_RELU, "tanh": ACT_TANH, "sigmoid": ACT_SIGMOID}

LOSS_CE = 0
LOSS_SQ = 1
LOSSES = {"cross_entropy": LOSS_CE, "squared_error": LOSS_SQ}

MOVE_WEIGHT = 0
MOVE_BIAS = 1
MOVE_BIRTH = 2
MOVE_DEATH = 3
MOVE_ALL = 4
N_MOVES = 5
MOVE_NAMES = ("weight", "bias", "birth", "death", "all")
