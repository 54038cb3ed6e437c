"""Unsupervised digit recognition with STDP, after Diehl & Cook (2015, Front. Comput.
Neurosci. 9:99): Poisson-encoded pixels drive an excitatory layer through plastic synapses;
each excitatory neuron excites one inhibitory neuron that inhibits all excitatory ones
(competition); adaptive thresholds spread the learning over the neurons; after training each
neuron is labelled with the class it responds to most, and an image is classified by the
class whose neurons fire most.

>>> from sklearn.datasets import load_digits                          # doctest: +SKIP
>>> x, y = load_digits(return_X_y=True)                               # doctest: +SKIP
>>> clf = DiehlCookClassifier(n_neurons=100, seed=0).fit(x[:500], y[:500])  # doctest: +SKIP
>>> clf.score(x[1000:1300], y[1000:1300])                             # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurofabric.core.checkpoint import atomic_directory, load_checkpoint, save_checkpoint
from neurofabric.core.errors import CheckpointError, ConfigError, NotFittedError, ShapeError
from neurofabric.core.rng import SeedLike, seed_to_int
from neurofabric.core.validation import check_int, check_positive
from neurofabric.snn.homeostasis import AdaptiveThreshold
from neurofabric.snn.inputs import PoissonInput
from neurofabric.snn.monitors import SpikeMonitor
from neurofabric.snn.network import SpikingNetwork
from neurofabric.snn.params import LIFParams, SynapseParams
from neurofabric.snn.plasticity import DiehlCookSTDP, rule_from_json, rule_to_json
from neurofabric.snn.topology import AllToAll, OneToOne

log = logging.getLogger(__name__)
mV, ms = 1e-3, 1e-3
_ENGINE = "snn.DiehlCookClassifier"
_PARAMS = (
    "n_neurons",
    "max_rate",
    "t_present",
    "t_rest",
    "min_spikes",
    "rate_boost",
    "theta_plus",
    "w_exc_inh",
    "w_inh_exc",
    "norm_per_input",
    "dt",
    "seed",
    "backend",
)


@dataclass
class TrainProgress:
    """What the ``callback`` of :meth:`DiehlCookClassifier.fit` receives per image."""

    image: int
    total: int
    images_per_s: float
    running_accuracy: float | None


class DiehlCookClassifier:
    """Diehl & Cook (2015) network of ``n_neurons`` excitatory and as many inhibitory LIF
    neurons with conductance synapses (dt 0.5 ms), DiehlCookSTDP on the input synapses,
    adaptive thresholds and per-neuron weight normalization after each image.

    ``max_rate`` is the Poisson rate of a full-intensity pixel (63.75 Hz); images are shown
    for ``t_present`` (350 ms) followed by ``t_rest`` (150 ms) of silence, and shown again
    with ``rate_boost`` more intensity while the layer fires fewer than ``min_spikes`` spikes.
    """

    def __init__(
        self,
        n_neurons: int = 100,
        *,
        max_rate: float = 63.75,
        t_present: float = 0.35,
        t_rest: float = 0.15,
        min_spikes: int = 5,
        rate_boost: float = 32.0,
        rule: DiehlCookSTDP | None = None,
        theta_plus: float = 0.05 * mV,
        w_exc_inh: float = 10.4,
        w_inh_exc: float = 17.0,
        norm_per_input: float = 0.1,
        dt: float = 0.5 * ms,
        seed: SeedLike = 0,
        backend: str = "auto",
    ) -> None:
        self.n_neurons = check_int("n_neurons", n_neurons, min_value=1)
        self.max_rate = check_positive("max_rate", max_rate, "Hz")
        self.t_present = check_positive("t_present", t_present, "s")
        self.t_rest = t_rest
        self.min_spikes = check_int("min_spikes", min_spikes, min_value=0)
        self.rate_boost = check_positive("rate_boost", rate_boost, "Hz")
        self.rule = rule or DiehlCookSTDP(nu_pre=1e-4, nu_post=1e-2, x_tar=0.4, mu=1.0, w_max=1.0)
        self.theta_plus = theta_plus
        self.w_exc_inh = w_exc_inh
        self.w_inh_exc = w_inh_exc
        self.norm_per_input = check_positive("norm_per_input", norm_per_input)
        self.dt = dt
        self.seed = seed_to_int(seed)
        self.backend = backend

    # -------------------------------------------------------------- network
    def _build(self, n_input: int) -> SpikingNetwork:
        n = self.n_neurons
        exc, inh = np.arange(n), np.arange(n, 2 * n)
        per = lambda e, i: np.where(np.arange(2 * n) < n, e, i)  # noqa: E731
        neuron = LIFParams(
            v_rest=per(-65 * mV, -60 * mV),
            v_reset=per(-65 * mV, -45 * mV),
            v_th=per(-52 * mV, -40 * mV),
            tau_m=per(100 * ms, 10 * ms),
            t_ref=per(5 * ms, 2 * ms),
        )
        net = SpikingNetwork(
            2 * n,
            neuron=neuron,
            excitatory_ratio=0.5,
            dt=self.dt,
            max_delay=self.dt,
            synapse=SynapseParams("coba", tau_e=1 * ms, tau_i=2 * ms, e_exc=0.0, e_inh=-100 * mV),
            homeostasis=AdaptiveThreshold(theta_plus=self.theta_plus, tau_theta=1e4),
            v_init="rest",
            propagation="event",
            backend=self.backend,
            seed=self.seed,
        )
        net.add_input("pixels", PoissonInput(n_input, rate=0.0))
        net.connect(
            AllToAll(),
            source="pixels",
            target_range=(0, n),
            weight=0.15,
            weight_std=0.1,
            dale=True,
            plasticity=self.rule,
        )
        net.connect(OneToOne(), source_range=(0, n), target_range=(n, 2 * n), weight=self.w_exc_inh)
        net.connect(
            AllToAll(),
            source_range=(n, 2 * n),
            target_range=(0, n),
            weight=self.w_exc_inh,
            inh_weight=self.w_inh_exc,
        )
        net.build()
        net.normalize_weights("pixels", self.norm_per_input * n_input)
        self._exc, self._inh = exc, inh
        return net

    def _check_x(self, x: Any) -> np.ndarray:
        arr = np.asarray(x)
        if arr.ndim < 2 or arr.shape[0] == 0:
            raise ShapeError(
                f"`x` must be (images, pixels...) with at least one image, got shape {arr.shape}"
            )
        arr = arr.reshape(arr.shape[0], -1).astype(np.float64)
        if not np.all(np.isfinite(arr)) or arr.min() < 0:
            raise ConfigError("`x` must hold finite, non-negative intensities")
        if hasattr(self, "n_input_") and arr.shape[1] != self.n_input_:
            raise ShapeError(f"`x` images must have {self.n_input_} pixels, got {arr.shape[1]}")
        return arr

    def _present(self, net: SpikingNetwork, image: np.ndarray, scale: float) -> np.ndarray:
        """Spike counts of the excitatory neurons for one image (rate boosted until the
        layer answers), then rest."""
        boost = 0.0
        for _ in range(5):
            net.set_input_rates("pixels", image * scale * (self.max_rate + boost))
            res = net.run(self.t_present, monitors=[SpikeMonitor(neurons=self._exc)])
            counts = np.bincount(res.spike_indices, minlength=self.n_neurons)[: self.n_neurons]
            if self.t_rest > 0:
                net.set_input_rates("pixels", 0.0)
                net.run(self.t_rest)
            if counts.sum() >= self.min_spikes:
                break
            boost += self.rate_boost
        return counts

    # -------------------------------------------------------------- estimator API
    def fit(
        self,
        x: Any,
        y: Any,
        *,
        epochs: int = 1,
        label_images: int | None = 10000,
        callback: Callable[[TrainProgress], None] | None = None,
    ) -> DiehlCookClassifier:
        """Learn without labels from ``x``, then label the neurons with ``y``: from a pass
        over the first ``label_images`` images with learning frozen (None: from the
        responses recorded while learning, as Diehl & Cook do, which is faster)."""
        xs = self._check_x(x)
        ys = self._check_y(y, len(xs))
        check_int("epochs", epochs, min_value=1)
        self.n_input_ = xs.shape[1]
        self.scale_ = 1.0 / max(float(xs.max()), 1e-12)
        self.net_ = self._build(self.n_input_)
        self.classes_ = np.unique(ys)
        responses = np.zeros((len(xs), self.n_neurons))
        t0 = time.perf_counter()
        total = epochs * len(xs)
        for epoch in range(epochs):
            order = np.random.default_rng(self.seed + epoch).permutation(len(xs))
            for k, i in enumerate(order):
                responses[i] = self._present(self.net_, xs[i], self.scale_)
                self.net_.normalize_weights("pixels", self.norm_per_input * self.n_input_)
                if callback is not None:
                    done = epoch * len(xs) + k + 1
                    callback(TrainProgress(done, total, done / (time.perf_counter() - t0), None))
        if label_images is None:
            self._assign(responses, ys)
        else:
            self.assignments_ = np.zeros(self.n_neurons, ys.dtype)
            if label_images > 0:
                self.relabel(xs[:label_images], ys[:label_images])
        return self

    def _check_y(self, y: Any, n: int) -> np.ndarray:
        ys = np.asarray(y)
        if ys.shape != (n,) or ys.dtype.kind not in "iu":
            raise ShapeError(f"`y` must be {n} integer labels, got {ys.dtype} {ys.shape}")
        if ys.min() < 0:
            raise ConfigError(f"labels must be >= 0, got {ys.min()}")
        return ys

    def _assign(self, responses: np.ndarray, y: np.ndarray) -> None:
        """Label each neuron with the class of its highest average response."""
        means = np.stack([responses[y == c].mean(axis=0) for c in self.classes_])
        self.assignments_ = self.classes_[np.argmax(means, axis=0)]

    def responses(self, x: Any) -> np.ndarray:
        """Excitatory spike counts per image with learning and thresholds frozen."""
        self._require_fitted()
        xs = self._check_x(x)
        net = self.net_
        net.set_learning(False)
        net.freeze_homeostasis(True)
        try:
            return np.stack([self._present(net, img, self.scale_) for img in xs])
        finally:
            net.set_learning(True)
            net.freeze_homeostasis(False)

    def predict(self, x: Any) -> np.ndarray:
        """The class whose assigned neurons fire most on average."""
        r = self.responses(x)
        scores = np.stack(
            [
                r[:, self.assignments_ == c].mean(axis=1)
                if np.any(self.assignments_ == c)
                else np.zeros(len(r))
                for c in self.classes_
            ],
            axis=1,
        )
        return self.classes_[np.argmax(scores, axis=1)]

    def score(self, x: Any, y: Any) -> float:
        xs = self._check_x(x)
        return float(np.mean(self.predict(xs) == self._check_y(y, len(xs))))

    def relabel(self, x: Any, y: Any) -> DiehlCookClassifier:
        """Assign neuron labels again from labelled images (learning frozen)."""
        xs = self._check_x(x)
        self._assign(self.responses(xs), self._check_y(y, len(xs)))
        return self

    @property
    def input_weights_(self) -> np.ndarray:
        """Learned input weights as (neurons, pixels)."""
        self._require_fitted()
        csr = self.net_.input_csr_
        w = np.zeros((self.n_neurons, self.n_input_), np.float32)
        src = csr.sources()
        mask = csr.mask == 1 if csr.mask.size else np.ones(csr.n_synapses, bool)
        w[csr.indices[mask], src[mask]] = csr.weights[mask]
        return w

    def report(self, x: Any, y: Any) -> dict[str, Any]:
        """Accuracy, macro-F1, per-class precision/recall and the confusion matrix."""
        from neurofabric.core.metrics import classification_report

        xs = self._check_x(x)
        ys = self._check_y(y, len(xs))
        return classification_report(
            ys, self.predict(xs), int(max(ys.max(), self.classes_.max())) + 1
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save the learned network and the neuron labels (a directory, written atomically)."""
        self._require_fitted()
        dest = Path(path)
        with atomic_directory(dest) as tmp:
            self.net_.save(tmp / "network")
            params = {k: getattr(self, k) for k in _PARAMS}
            params["rule"] = rule_to_json(self.rule)
            save_checkpoint(
                tmp / "classifier",
                engine=_ENGINE,
                params=params,
                arrays={"assignments": self.assignments_, "classes": self.classes_},
                meta={"n_input": self.n_input_, "scale": self.scale_},
            )
        return dest

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DiehlCookClassifier:
        """Load a classifier saved by :meth:`save`; ``CheckpointError`` if it is corrupt."""
        ck = load_checkpoint(Path(path) / "classifier", engine=_ENGINE)
        try:
            params = dict(ck.params)
            params["rule"] = rule_from_json(params["rule"])
            clf = cls(**params)
            clf.net_ = SpikingNetwork.load(Path(path) / "network")
            clf.n_input_ = int(ck.meta["n_input"])
            clf.scale_ = float(ck.meta["scale"])
            clf.assignments_ = np.array(ck.arrays["assignments"])
            clf.classes_ = np.array(ck.arrays["classes"])
            n = clf.n_neurons
            clf._exc, clf._inh = np.arange(n), np.arange(n, 2 * n)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{path}: classifier checkpoint is inconsistent ({exc!r})"
            ) from exc
        return clf

    def _require_fitted(self) -> None:
        if not hasattr(self, "assignments_"):
            raise NotFittedError("DiehlCookClassifier is not fitted yet: call fit(x, y)")
