"""The spiking simulator: LIF networks on CSR or procedural connectivity."""

from neurofabric.snn.inputs import PoissonInput, SpikeArrayInput
from neurofabric.snn.monitors import RateMonitor, RunResult, SpikeMonitor, StateMonitor
from neurofabric.snn.network import SpikingNetwork
from neurofabric.snn.params import LIFParams, SynapseParams
from neurofabric.snn.state import NetworkState
from neurofabric.snn.topology import (
    AllToAll,
    DistanceDependent,
    Explicit,
    FixedTotalNumber,
    OneToOne,
    Random,
    SmallWorld,
)

__all__ = [
    "AllToAll",
    "DistanceDependent",
    "Explicit",
    "FixedTotalNumber",
    "LIFParams",
    "NetworkState",
    "OneToOne",
    "PoissonInput",
    "Random",
    "RateMonitor",
    "RunResult",
    "SmallWorld",
    "SpikeArrayInput",
    "SpikeMonitor",
    "SpikingNetwork",
    "StateMonitor",
    "SynapseParams",
]
