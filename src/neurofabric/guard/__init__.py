"""The event-driven classifier: a field of 16-byte neuron records trained by local feedback."""

from neurofabric.guard.compress import compress
from neurofabric.guard.field import NEURON_DTYPE, EventBatch, NeuronField
from neurofabric.guard.guard import GuardClassifier, as_events, saved_bytes
from neurofabric.guard.params import GuardParams, TextParams
from neurofabric.guard.runtime import GuardRuntime
from neurofabric.guard.text import TextFeaturizer, TextGuardClassifier, encode_texts

__all__ = [
    "NEURON_DTYPE",
    "EventBatch",
    "GuardClassifier",
    "GuardParams",
    "GuardRuntime",
    "NeuronField",
    "TextFeaturizer",
    "TextGuardClassifier",
    "TextParams",
    "as_events",
    "compress",
    "encode_texts",
    "saved_bytes",
]
