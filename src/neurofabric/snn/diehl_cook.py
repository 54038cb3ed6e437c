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
from pathlib import Path
from typing import Any

import numpy as np

from neurofabric.core.checkpoint import (
    atomic_directory,
    load_checkpoint,
    recover_directory,
    save_checkpoint,
)
from neurofabric.core.errors import CheckpointError, ConfigError, NotFittedError, ShapeError
from neurofabric.core.progress import ProgressCallback, ProgressReporter, check_callback
from neurofabric.core.rng import SeedLike, seed_to_int
from neurofabric.core.validation import (
    check_choice,
    check_instance,
    check_int,
    check_nonnegative,
    check_positive,
)
from neurofabric.snn.homeostasis import AdaptiveThreshold
from neurofabric.snn.inputs import PoissonInput
from neurofabric.snn.monitors import SpikeMonitor
from neurofabric.snn.network import SpikingNetwork
from neurofabric.snn.params import LIFParams, SynapseParams
from neurofabric.snn.plasticity import (
    DiehlCookSTDP,
    PairSTDP,
    TripletSTDP,
    rule_from_json,
    rule_to_json,
)
from neurofabric.snn.stp import ShortTermPlasticity
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
    "weight_bits",
    "t_lock_exc",
)


def _fingerprint(xs: np.ndarray, ys: np.ndarray, epochs: int) -> str:
    """A short digest of the training set, so a checkpoint is only resumed on its own data."""
    import hashlib

    h = hashlib.sha256()
    h.update(np.ascontiguousarray(xs).tobytes())
    h.update(np.ascontiguousarray(ys).tobytes())
    h.update(str(epochs).encode())
    return h.hexdigest()[:32]


def _jsonable(v: Any) -> Any:
    import json

    return json.loads(json.dumps(v, default=str))


class _RunningAccuracy:
    """Classify each training image from its response with labels assigned from the
    responses of the ``window`` images before it (reassigned every 250 images); the
    estimate is the hit rate of the last ``window`` such predictions."""

    def __init__(self, n_neurons: int, classes: np.ndarray, window: int = 1000) -> None:
        self.classes = classes
        self.resp = np.zeros((window, n_neurons))
        self.lab = np.full(window, -1, np.int64)
        self.hit = np.full(window, -1, np.int8)  # -1: no prediction made
        self.n = 0
        self.assign: np.ndarray | None = None

    def add(self, counts: np.ndarray, label: int) -> None:
        slot = self.n % len(self.lab)
        if self.assign is not None:
            scores = [
                counts[self.assign == c].mean() if np.any(self.assign == c) else 0.0
                for c in self.classes
            ]
            self.hit[slot] = self.classes[int(np.argmax(scores))] == label
        self.resp[slot], self.lab[slot] = counts, label
        self.n += 1
        if self.n % 250 == 0:
            seen = self.lab >= 0
            means = np.zeros((len(self.classes), self.resp.shape[1]))
            for c, cls in enumerate(self.classes):
                sel = seen & (self.lab == cls)
                if np.any(sel):
                    means[c] = self.resp[sel].mean(axis=0)
            self.assign = self.classes[np.argmax(means, axis=0)]

    def accuracy(self) -> float | None:
        made = self.hit >= 0
        return float(self.hit[made].mean()) if np.any(made) else None


class _Training:
    """One fit: the data, the training state (images done, responses, master weights) and
    where the checkpoints go."""

    def __init__(
        self,
        xs: np.ndarray,
        ys: np.ndarray,
        epochs: int,
        checkpoint: str | os.PathLike[str] | None,
        every: int,
        seed: int,
    ) -> None:
        self.xs, self.ys, self.seed = xs, ys, seed
        self._orders: dict[int, np.ndarray] = {}
        self.total = epochs * len(xs)
        self.fingerprint = _fingerprint(xs, ys, epochs)
        self.path = None if checkpoint is None else Path(checkpoint)
        self.every = every
        self.done = 0
        self.responses = np.zeros((0, 0), np.uint16)
        self.master: np.ndarray | None = None
        self.counts = np.zeros(0, np.int64)

    def order(self, epoch: int) -> np.ndarray:
        """The presentation order of ``epoch`` (a permutation drawn from ``seed + epoch``)."""
        if epoch not in self._orders:  # one epoch's order kept at a time
            rng = np.random.default_rng(self.seed + epoch)
            self._orders = {epoch: rng.permutation(len(self.xs))}
        return self._orders[epoch]

    def image(self, step: int) -> int:
        """The index of the image shown at training step ``step``."""
        epoch, k = divmod(step, len(self.xs))
        return int(self.order(epoch)[k])

    def seen(self) -> np.ndarray:
        """Which images have been shown (all after the first epoch)."""
        if self.done >= len(self.xs):
            return np.ones(len(self.xs), bool)
        seen = np.zeros(len(self.xs), bool)
        seen[self.order(0)[: self.done]] = True
        return seen


class DiehlCookClassifier:
    """Diehl & Cook (2015) network of ``n_neurons`` excitatory and as many inhibitory LIF
    neurons with conductance synapses (dt 0.5 ms), DiehlCookSTDP on the input synapses,
    adaptive thresholds and per-neuron weight normalization after each image.

    ``max_rate`` is the Poisson rate of a full-intensity pixel (63.75 Hz); images are shown
    for ``t_present`` (350 ms) followed by ``t_rest`` (150 ms) of silence, and shown again
    with ``rate_boost`` more intensity while the layer fires fewer than ``min_spikes`` spikes.

    ``weight_bits`` (2, 4 or 8) turns on quantization-aware learning: the network computes
    with the per-neuron symmetric rounding of float master weights; the STDP change of each
    image is added to the master weights (a straight-through estimate), which are then
    normalized and rounded again for the next image.
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
        rule: Any = None,
        theta_plus: float = 0.05 * mV,
        w_exc_inh: float = 10.4,
        w_inh_exc: float = 17.0,
        norm_per_input: float = 0.1,
        dt: float = 0.5 * ms,
        seed: SeedLike = 0,
        backend: str = "auto",
        weight_bits: int | None = None,
        t_lock_exc: float = 5 * ms,
    ) -> None:
        self.n_neurons = check_int("n_neurons", n_neurons, min_value=1)
        self.max_rate = check_positive("max_rate", max_rate, "Hz")
        self.t_present = check_positive("t_present", t_present, "s")
        check_nonnegative("t_rest", t_rest, "s")
        self.t_rest = t_rest
        self.min_spikes = check_int("min_spikes", min_spikes, min_value=0)
        self.rate_boost = check_positive("rate_boost", rate_boost, "Hz")
        if rule is None or rule == "paper":
            rule = DiehlCookSTDP(nu_pre=1e-4, nu_post=1e-2, x_tar=0.4, mu=1.0, w_max=1.0)
        elif rule == "code":
            rule = self.code_rule()
        else:
            expected = "'paper', 'code' or a rule of neurofabric.snn.plasticity"
            check_instance("rule", rule, (PairSTDP, TripletSTDP, DiehlCookSTDP), expected)
        self.rule = rule
        for name, value, unit in (
            ("theta_plus", theta_plus, "V"),
            ("w_exc_inh", w_exc_inh, ""),
            ("w_inh_exc", w_inh_exc, ""),
        ):
            check_nonnegative(name, value, unit)
        self.theta_plus = theta_plus
        self.w_exc_inh = w_exc_inh
        self.w_inh_exc = w_inh_exc
        self.norm_per_input = check_positive("norm_per_input", norm_per_input)
        check_positive("dt", dt, "s")
        self.dt = dt
        self.seed = seed_to_int(seed)
        self.backend = backend
        self.weight_bits = check_choice("weight_bits", weight_bits, (2, 4, 8, None))
        self.t_lock_exc = check_positive("t_lock_exc", t_lock_exc, "s")

    @staticmethod
    def code_rule(a2_plus: float = 0.0) -> TripletSTDP:
        """The learning rule of Diehl & Cook's published code as a triplet rule: on a pre
        spike ``w -= 1e-4 post1``; on a post spike ``w += 0.01 pre post2`` (post2 read
        before it is reset), nearest-spike traces (pre and post1: 20 ms, post2: 40 ms),
        w in [0, 1]. ``a2_plus > 0`` adds pair potentiation ``a2_plus pre`` on every post
        spike (not in the code: it lets neurons that fire isolated spikes learn too)."""
        return TripletSTDP(
            a2_plus=a2_plus,
            a3_plus=0.01,
            a2_minus=1e-4,
            a3_minus=0.0,
            tau_plus=20e-3,
            tau_x=20e-3,
            tau_minus=20e-3,
            tau_y=40e-3,
            interaction="nearest",
            w_max=1.0,
        )

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
            t_lock=per(max(self.t_lock_exc, 5 * ms), 2 * ms),
        )
        net = SpikingNetwork(
            2 * n,
            neuron=neuron,
            excitatory_ratio=0.5,
            dt=self.dt,
            max_delay=self.dt,
            synapse=SynapseParams("coba", tau_e=1 * ms, tau_i=2 * ms, e_exc=0.0, e_inh=-100 * mV),
            homeostasis=AdaptiveThreshold(
                theta_plus=self.theta_plus, tau_theta=1e4, neurons=(0, n)
            ),
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
            AllToAll(skip_partner=True),
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
        callback: ProgressCallback | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        checkpoint_every: int = 1000,
        resume: bool = False,
    ) -> DiehlCookClassifier:
        """Learn without labels from ``x``, then label the neurons with ``y``: from a pass
        over the first ``label_images`` images with learning frozen (None: from the
        responses recorded while learning, as Diehl & Cook do, which is faster).

        ``checkpoint`` names a directory rewritten (atomically) every ``checkpoint_every``
        images; with ``resume=True`` an existing checkpoint there is continued from the image
        after it was written, and the result equals an uninterrupted run (same ``x``, ``y``
        and parameters: a mismatch raises ``CheckpointError``). Resuming is strict:
        ``resume=True`` without a checkpoint there raises ``CheckpointError``, and so does
        ``resume=False`` on a folder that already holds one (it is never overwritten
        silently).

        ``callback`` receives a :class:`~neurofabric.core.progress.Progress` per image (task
        ``"snn.diehl_cook.fit"``, unit ``"image"``, metrics ``images_per_s`` and
        ``accuracy``, a running estimate: each image classified from its training response
        with labels assigned from the responses of the 1,000 images before it, None until
        the first 250). When it returns True, training stops after that image: the
        checkpoint (if any) is written there, so ``resume=True`` continues from it; the
        neurons are labelled as after a full run (from the images seen, with
        ``label_images=None``); ``stopped_`` is True.
        """
        xs = self._check_x(x)
        ys = self._check_y(y, len(xs))
        check_int("epochs", epochs, min_value=1)
        check_int("checkpoint_every", checkpoint_every, min_value=1)
        check_callback(callback)
        if label_images is not None:
            check_int("label_images", label_images, min_value=0)
        run = _Training(xs, ys, epochs, checkpoint, checkpoint_every, self.seed)
        self._check_resume(checkpoint, resume)
        if resume:
            run.done, run.responses, run.master = self._load_progress(run.path, run.fingerprint)
            log.info("resuming training from %s at image %d of %d", checkpoint, run.done, run.total)
        else:
            self.n_input_ = xs.shape[1]
            self.scale_ = 1.0 / max(float(xs.max()), 1e-12)
            self.net_ = self._build(self.n_input_)
            self.classes_ = np.unique(ys)
            run.responses = np.zeros((len(xs), self.n_neurons), np.uint16)
            run.master = self._plastic_weights().copy() if self.weight_bits else None
        reporter = ProgressReporter("snn.diehl_cook.fit", run.total, "image", callback)
        self._train(run, reporter)
        self.stopped_ = reporter.stopped
        if run.master is not None:
            self._set_plastic_weights(self._rounded(run.master))
        if label_images is None:
            seen = run.seen()
            self._assign(run.responses[seen].astype(np.float64), ys[seen])
        else:
            self.assignments_ = np.zeros(self.n_neurons, ys.dtype)
            if label_images > 0:
                self.relabel(xs[:label_images], ys[:label_images])
        return self

    def _train(self, run: _Training, reporter: ProgressReporter) -> None:
        """The training loop from image ``run.done`` on, until the end or the callback's
        stop (with a checkpoint where it stopped)."""
        run_est = _RunningAccuracy(self.n_neurons, self.classes_)
        start, saved = run.done, run.done
        while run.done < run.total:
            i = run.image(run.done)
            self._learn_image(run, i)
            if reporter.active:  # the running accuracy is a metric for the callback only
                run_est.add(run.counts, int(run.ys[i]))
            run.done += 1
            due = run.done % run.every == 0 or run.done == run.total
            if run.path is not None and due:
                self._save_progress(run)
                saved = run.done
            if not reporter.active:
                continue
            rate = (run.done - start) / max(reporter.elapsed_s, 1e-9)
            if reporter.update(run.done, images_per_s=rate, accuracy=run_est.accuracy()):
                log.info("training stopped by the callback after image %d", run.done)
                if run.path is not None and saved != run.done:
                    self._save_progress(run)
                break

    def _learn_image(self, run: _Training, i: int) -> None:
        """Present image ``i`` with learning on (quantization-aware: on the rounded master
        weights), record its response, normalize the weights."""
        master = run.master
        if master is not None:
            self._set_plastic_weights(self._rounded(master))
            before = self._plastic_weights().copy()
        run.counts = self._present(self.net_, run.xs[i], self.scale_)
        run.responses[i] = np.minimum(run.counts, np.iinfo(np.uint16).max)
        if master is not None:
            master += self._plastic_weights() - before
            np.clip(master, 0.0, self.rule.w_max, out=master)
            self._set_plastic_weights(master)
        self.net_.normalize_weights("pixels", self.norm_per_input * self.n_input_)
        if master is not None:
            master[:] = self._plastic_weights()

    # ------------------------------------------------------- quantization-aware learning
    def _plastic_mask(self) -> np.ndarray:
        csr = self.net_.input_csr_
        return csr.mask == 1 if csr.mask.size else np.ones(csr.n_synapses, bool)

    def _plastic_weights(self) -> np.ndarray:
        csr = self.net_.input_csr_
        return csr.weights[self._plastic_mask()].astype(np.float64)

    def _set_plastic_weights(self, w: np.ndarray) -> None:
        csr = self.net_.input_csr_
        csr.weights[self._plastic_mask()] = w

    def _rounded(self, w: np.ndarray) -> np.ndarray:
        """Per-neuron symmetric rounding of plastic weights given in CSR order."""
        from neurofabric.quant import QuantSpec, fake_quantize

        csr = self.net_.input_csr_
        mask = self._plastic_mask()
        tgt, src = csr.indices[mask], csr.sources()[mask]
        dense = np.zeros((self.n_neurons, self.n_input_))
        dense[tgt, src] = w
        spec = QuantSpec(bits=self.weight_bits, scheme="symmetric", granularity="channel")
        return fake_quantize(dense, spec)[tgt, src]

    # ------------------------------------------------------------------ checkpoints
    def _save_progress(self, run: _Training) -> None:
        """The training checkpoint after ``run.done`` images (the network as it computes:
        with quantization-aware learning, on the rounded master weights)."""
        if run.master is not None:
            self._set_plastic_weights(self._rounded(run.master))
        arrays = {"responses": run.responses, "classes": self.classes_}
        if run.master is not None:
            arrays["master_weights"] = run.master
        meta = {"done": run.done, "fingerprint": run.fingerprint}
        self._write(run.path, _ENGINE + ".training", arrays, meta)

    def _params_json(self) -> dict[str, Any]:
        params = {k: getattr(self, k) for k in _PARAMS}
        params["rule"] = rule_to_json(self.rule)
        return params

    def _write(self, path: Path, engine: str, arrays: dict, meta: dict) -> None:
        """The network and the classifier checkpoint, swapped into ``path`` atomically."""
        with atomic_directory(path) as tmp:
            self.net_.save(tmp / "network")
            save_checkpoint(
                tmp / "classifier",
                engine=engine,
                params=self._params_json(),
                arrays=arrays,
                meta={"n_input": self.n_input_, "scale": self.scale_, **meta},
            )

    @staticmethod
    def _check_resume(checkpoint: str | os.PathLike[str] | None, resume: bool) -> None:
        """Resume strictly: ``resume=True`` needs a checkpoint to continue, ``resume=False``
        refuses to overwrite one (either way nothing is lost silently)."""
        if checkpoint is None:
            if resume:
                raise ConfigError(
                    "`resume=True` needs `checkpoint`, the folder of the run to continue"
                )
            return
        path = Path(checkpoint)
        recover_directory(path)  # an interrupted checkpoint swap
        has = (path / "classifier" / "manifest.json").is_file()
        if resume and not has:
            raise CheckpointError(
                f"`resume=True` but {path} holds no training checkpoint (no "
                "classifier/manifest.json); check the folder, or pass resume=False to start "
                "a new run"
            )
        if not resume and path.exists() and (has or any(path.iterdir())):
            raise CheckpointError(
                f"{path} already holds a training checkpoint; pass resume=True to continue "
                "it, or delete the folder (or choose another) to start over"
            )

    def _load_progress(
        self, path: Path, fingerprint: str
    ) -> tuple[int, np.ndarray, np.ndarray | None]:
        ck = load_checkpoint(path / "classifier", engine=_ENGINE + ".training")
        mine = self._params_json()
        theirs = dict(ck.params)
        if _jsonable(mine) != _jsonable(theirs) or ck.meta.get("fingerprint") != fingerprint:
            diff = sorted(k for k in mine if _jsonable(mine[k]) != _jsonable(theirs.get(k)))
            raise CheckpointError(
                f"{path}: the checkpoint was written for other parameters ({diff}) or other "
                "training data; pass resume=False (or another checkpoint directory) to start over"
            )
        self.net_ = SpikingNetwork.load(path / "network")
        self.n_input_ = int(ck.meta["n_input"])
        self.scale_ = float(ck.meta["scale"])
        self.classes_ = np.array(ck.arrays["classes"])
        n = self.n_neurons
        self._exc, self._inh = np.arange(n), np.arange(n, 2 * n)
        master = ck.arrays.get("master_weights")
        return (
            int(ck.meta["done"]),
            np.array(ck.arrays["responses"]),
            None if master is None else np.array(master),
        )

    def _check_y(self, y: Any, n: int) -> np.ndarray:
        ys = np.asarray(y)
        if ys.shape != (n,) or ys.dtype.kind not in "iu":
            raise ShapeError(f"`y` must be {n} integer labels, got {ys.dtype} {ys.shape}")
        if ys.min() < 0:
            raise ConfigError(f"labels must be >= 0, got {ys.min()}")
        return ys

    def _assign(self, responses: np.ndarray, y: np.ndarray) -> None:
        """Label each neuron with the class of its highest average response."""
        means = np.stack(
            [
                responses[y == c].mean(axis=0)
                if np.any(y == c)
                else np.full(self.n_neurons, -np.inf)
                for c in self.classes_
            ]
        )  # a class without images is assigned to no neuron
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

    def set_stp(self, stp: ShortTermPlasticity | None) -> DiehlCookClassifier:
        """The post-training short-term-plasticity phase: the learned input weights stay
        frozen and each pixel's spikes are transmitted with efficacy ``w + k w r(t)``
        (``ShortTermPlasticity(mode="modulate")``), or ``w r(t)`` with ``mode="release"``;
        ``None`` switches it off. Relabel afterwards (:meth:`relabel`): the responses change."""
        self._require_fitted()
        self.net_.set_stp(stp, source="inputs")
        return self

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

    def quantize_input_weights(self, bits: int, *, granularity: str = "channel") -> Any:
        """Round the learned input weights in place to ``bits`` (8, 4 or 2) per neuron
        (``granularity="channel"``) or for the whole matrix (``"tensor"``), symmetric, and
        return the packed :class:`neurofabric.quant.QuantizedTensor` (its ``nbytes`` and
        ``compression_ratio`` are the true size, scales included). Relabel afterwards."""
        from neurofabric.quant import QuantSpec, quantize

        self._require_fitted()
        check_choice("bits", bits, (2, 4, 8))
        spec = QuantSpec(bits=bits, scheme="symmetric", granularity=granularity)
        q = quantize(self.input_weights_, spec)
        csr = self.net_.input_csr_
        mask = self._plastic_mask()
        csr.weights[mask] = q.dequantize()[csr.indices[mask], csr.sources()[mask]]
        return q

    @property
    def backend_(self) -> str:
        """The kernel backend the network runs on (``"auto"`` resolved)."""
        self._require_fitted()
        return self.net_.backend_

    @property
    def input_weights_(self) -> np.ndarray:
        """Learned input weights as (neurons, pixels); also while ``fit`` runs (from a
        progress callback), since the network exists from its first image."""
        if not hasattr(self, "net_"):
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
        self._write(dest, _ENGINE, {"assignments": self.assignments_, "classes": self.classes_}, {})
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
