"""The thermodynamic trainer: gradient-free learning by Metropolis-Hastings annealing over the
weights and the topology of a sparse network stored as Arrow columns."""

from neurofabric.thermo.fabric import NeuralFabric
from neurofabric.thermo.params import Moves
from neurofabric.thermo.plots import plot_history
from neurofabric.thermo.schedules import Adaptive, Constant, Geometric, Linear
from neurofabric.thermo.thermo import History, ThermoClassifier

__all__ = [
    "Adaptive",
    "Constant",
    "Geometric",
    "History",
    "Linear",
    "Moves",
    "NeuralFabric",
    "plot_history",
    "ThermoClassifier",
]
