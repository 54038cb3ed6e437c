"""The text front end: fastText-style tokens hashed to input neurons, and ``TextGuardClassifier``.

>>> from neurofabric.guard import TextGuardClassifier
>>> docs = ["cheap pills online", "meeting at noon", "buy cheap pills", "lunch meeting today"]
>>> clf = TextGuardClassifier(n_features=1024, epochs=5, seed=0).fit(docs, ["spam", "ham", "spam", "ham"])
>>> clf.predict(["cheap pills", "noon meeting"]).tolist()
['spam', 'ham']
"""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from neurofabric.core import backend as backends
from neurofabric.core.checkpoint import load_checkpoint, save_checkpoint
from neurofabric.core.errors import CheckpointError, ConfigError, NotFittedError, ShapeError
from neurofabric.core.progress import ProgressCallback, check_callback
from neurofabric.guard.field import EventBatch, kernels
from neurofabric.guard.guard import GuardClassifier
from neurofabric.guard.io import decode_ids, encode_ids
from neurofabric.guard.params import GuardParams, TextParams

log = logging.getLogger(__name__)

__all__ = ["TextFeaturizer", "TextGuardClassifier", "encode_texts"]


def encode_texts(texts: Any) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes of all documents in one buffer, and the offsets of each document."""
    if isinstance(texts, str | bytes):
        raise ShapeError("texts must be a list of documents, got a single string; wrap it in [ ]")
    encoded = []
    for i, t in enumerate(texts):
        if isinstance(t, bytes):
            encoded.append(t)
        elif isinstance(t, str):
            encoded.append(t.encode("utf-8", "surrogatepass"))
        else:
            raise ShapeError(f"document {i} is a {type(t).__name__}, expected str")
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    buf = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    return buf, offsets


class TextFeaturizer:
    """Documents to events: hashed tokens, idf weights learned by ``fit``.

    ``keep_`` (None, or the ascending hashed ids a compressed model kept, see
    :mod:`neurofabric.guard.compress`): tokens hashed elsewhere are dropped before weighing,
    and the kept ids are renumbered 0..len(keep_)-1, so the field has only the kept inputs.
    """

    def __init__(self, params: TextParams | None = None, *, backend: str = "auto") -> None:
        self.params = params or TextParams()
        #: the backend actually used ("auto" resolved to the fastest installed); its kernels
        #: are imported when first needed
        self.backend = backends.choose("guard", backend)
        self._k = None
        self.keep_: np.ndarray | None = None

    def _kernels(self):
        if self._k is None:
            _, self._k = kernels(self.backend)
        return self._k

    @property
    def n_inputs(self) -> int:
        """Input neurons the events address: ``n_features``, or the kept ids."""
        return self.params.n_features if self.keep_ is None else len(self.keep_)

    def counts(self, texts: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.params
        minn, maxn = p.char_ngrams or (0, 0)
        buf, offsets = encode_texts(texts)
        return self._kernels().text_features(buf, offsets, p.n_features, p.word_ngrams, minn, maxn)

    def fit(self, texts: Any) -> TextFeaturizer:
        self.fit_transform(texts)
        return self

    def fit_transform(self, texts: Any) -> EventBatch:
        indptr, indices, counts = self.counts(texts)
        n = len(indptr) - 1
        if n == 0:
            raise ShapeError("cannot fit on an empty corpus: no documents")
        self.keep_ = None
        if self.params.idf:
            df = self._kernels().document_frequency(indptr, indices, self.params.n_features)
            idf = np.log((1.0 + n) / (1.0 + df)) + 1.0  # scikit-learn's smooth idf
            # stored as float16 on disk, so train with exactly what will be saved
            self.idf_ = idf.astype(np.float16).astype(np.float32)
        else:
            self.idf_ = np.ones(self.params.n_features, dtype=np.float32)
        self.n_documents_ = n
        return self._weigh(indptr, indices, counts)

    def transform(self, texts: Any) -> EventBatch:
        if not hasattr(self, "idf_"):
            raise NotFittedError("the featurizer is not fitted; call fit() first")
        return self._weigh(*self.counts(texts))

    def select(
        self, indptr: np.ndarray, indices: np.ndarray, counts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hashed features restricted to ``keep_`` and renumbered (unchanged without it)."""
        if self.keep_ is None:
            return indptr, indices, counts
        keep = self.keep_
        pos = np.searchsorted(keep, indices)
        hit = keep[np.minimum(pos, len(keep) - 1)] == indices if len(keep) else pos < 0
        rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        new_ptr = np.zeros(len(indptr), dtype=np.int64)
        np.cumsum(np.bincount(rows[hit], minlength=len(indptr) - 1), out=new_ptr[1:])
        return new_ptr, pos[hit].astype(np.int32), counts[hit]

    def _weigh(self, indptr, indices, counts) -> EventBatch:
        p = self.params
        indptr, indices, counts = self.select(indptr, indices, counts)
        values = self._kernels().weigh_rows(
            indptr, indices, counts, self.idf_, p.sublinear_tf, p.binary, p.normalize
        )
        return EventBatch(indptr, indices, values, self.n_inputs)


_TEXT_NAMES = {f.name for f in fields(TextParams)}
_GUARD_NAMES = {f.name for f in fields(GuardParams)}


class TextGuardClassifier:
    """Text classification with a guard field: ``fit(texts, labels)``, ``predict(texts)``.

    Parameters are those of :class:`TextParams` (the front end) and :class:`GuardParams` (the
    rule), plus ``seed``. ``rule="neuronguard"`` defaults the front end to what the proof of
    concept used: unigram presence (binary, no idf, no normalization).
    """

    def __init__(self, *, seed: Any = 0, **params: Any) -> None:
        self.seed = seed
        self._set(params)

    def _set(self, params: dict[str, Any]) -> None:
        unknown = set(params) - _TEXT_NAMES - _GUARD_NAMES
        if unknown:
            raise ConfigError(
                f"unknown parameter(s) {sorted(unknown)}; valid: {sorted(_TEXT_NAMES | _GUARD_NAMES)}"
            )
        text = {k: v for k, v in params.items() if k in _TEXT_NAMES}
        guard = {k: v for k, v in params.items() if k in _GUARD_NAMES}
        if guard.get("rule") == "neuronguard":
            for k, v in (
                ("binary", True),
                ("idf", False),
                ("normalize", False),
                ("word_ngrams", 1),
            ):
                text.setdefault(k, v)
        self.text_params = TextParams(**text)
        self.guard = GuardClassifier(seed=self.seed, **guard)
        self._given = dict(params)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {**self.text_params.as_dict(), **self.guard.params.as_dict(), "seed": self.seed}

    def set_params(self, **params: Any) -> TextGuardClassifier:
        self.seed = params.pop("seed", self.seed)
        self._set({**self._given, **params})
        return self

    @property
    def params(self) -> GuardParams:
        return self.guard.params

    @property
    def classes_(self) -> np.ndarray:
        return self.guard.classes_

    @property
    def history_(self) -> list[dict[str, float]]:
        return self.guard.history_

    @property
    def stopped_(self) -> bool:
        """Whether the last fit was stopped by its callback."""
        return self.guard.stopped_

    @property
    def backend_(self) -> str:
        """The kernel backend actually used ("auto" resolved)."""
        return self.guard.backend_

    def fit(
        self,
        texts: Any,
        y: Any,
        *,
        eval_set: tuple[Any, Any] | None = None,
        callback: ProgressCallback | None = None,
        classes: Any = None,
    ) -> TextGuardClassifier:
        """Fit the front end's idf, then the field (``GuardClassifier.fit``: ``callback`` gets
        a Progress per epoch, task "guard.fit", and returning True stops there)."""
        check_callback(callback)
        self.__dict__.pop("compression_", None)  # a new model on every input: not compressed
        self.featurizer_ = TextFeaturizer(self.text_params, backend=self.guard.params.backend)
        events = self.featurizer_.fit_transform(texts)
        ev = None
        if eval_set is not None:
            ev = (self.featurizer_.transform(eval_set[0]), eval_set[1])
        self.guard.fit(events, y, eval_set=ev, callback=callback, classes=classes)
        return self

    def partial_fit(self, texts: Any, y: Any, *, classes: Any = None) -> TextGuardClassifier:
        """One pass; the first call also fits the idf weights on this batch."""
        if not hasattr(self, "featurizer_"):
            self.featurizer_ = TextFeaturizer(self.text_params, backend=self.guard.params.backend)
            events = self.featurizer_.fit_transform(texts)
        else:
            events = self.featurizer_.transform(texts)
        self.guard.partial_fit(events, y, classes=classes)
        return self

    def transform(self, texts: Any) -> EventBatch:
        if not hasattr(self, "featurizer_"):
            raise NotFittedError("this TextGuardClassifier is not fitted yet; call fit() first")
        return self.featurizer_.transform(texts)

    def decision_function(self, texts: Any) -> np.ndarray:
        return self.guard.decision_function(self.transform(texts))

    def predict(self, texts: Any) -> np.ndarray:
        return self.guard.predict(self.transform(texts))

    def predict_proba(self, texts: Any) -> np.ndarray:
        return self.guard.predict_proba(self.transform(texts))

    def score(self, texts: Any, y: Any) -> float:
        return self.guard.score(self.transform(texts), y)

    def save(self, path: Any, *, weights: str | None = None) -> Path:
        """Field, classes, front-end parameters and idf (float16) in one checkpoint.

        ``weights``: "float32", "int8", or the row-quantized "int4" / "int2"; by default
        "float32", or the bit width a :func:`neurofabric.guard.compress` model was made with.
        A pruned front end stores its kept hashed ids (``keep_delta``, see ``guard.io``).
        """
        if not hasattr(self, "featurizer_"):
            raise NotFittedError("this TextGuardClassifier is not fitted yet; call fit() first")
        info = getattr(self, "compression_", None)
        if weights is None:
            weights = f"int{info['bits']}" if info else "float32"
        arrays, params, meta = self.guard._checkpoint_parts(weights)
        arrays["idf"] = self.featurizer_.idf_.astype(np.float16)
        if self.featurizer_.keep_ is not None:
            arrays["keep_delta"] = encode_ids(self.featurizer_.keep_)
        meta["n_documents"] = self.featurizer_.n_documents_
        if info:
            meta["compression"] = info
        params = {**params, **self.text_params.as_dict()}
        # a compressed model is a few small arrays: one file reads faster than six
        bundle = weights in ("int4", "int2")
        return save_checkpoint(
            path, engine="guard-text", params=params, arrays=arrays, meta=meta, bundle=bundle
        )

    @classmethod
    def load(cls, path: Any, *, verify: bool = True) -> TextGuardClassifier:
        ckpt = load_checkpoint(path, engine="guard-text", verify=verify)
        params = dict(ckpt.params)
        if params.get("char_ngrams") is not None:
            params["char_ngrams"] = tuple(params["char_ngrams"])
        try:
            clf = cls(**params)
        except (TypeError, ConfigError) as exc:
            raise CheckpointError(f"{path}: parameters cannot be restored ({exc})") from exc
        clf.guard._restore(ckpt)
        n = clf.text_params.n_features
        keep = None
        if "keep_delta" in ckpt.arrays:
            keep = decode_ids(ckpt.arrays["keep_delta"])
            if len(keep) and (keep[0] < 0 or keep[-1] >= n or np.any(np.diff(keep) <= 0)):
                raise CheckpointError(
                    f"{path}: keep_delta must give ascending hashed ids in [0, {n}); the "
                    "checkpoint is corrupt: restore it or save the model again"
                )
            n = len(keep)
        idf = np.asarray(ckpt.arrays.get("idf", np.zeros(0)), dtype=np.float32)
        if idf.ndim != 1 or not np.all(np.isfinite(idf)) or (len(idf) and idf.min() < 0):
            raise CheckpointError(
                f"{path}: idf must be a vector of finite values >= 0; the checkpoint is "
                "corrupt: restore it or save the model again"
            )
        if len(idf) != n or clf.guard.field_.n_inputs != n:
            raise CheckpointError(
                f"{path}: idf has {len(idf)} entries and the field {clf.guard.field_.n_inputs} "
                f"inputs, the front end has {n}"
            )
        clf.featurizer_ = TextFeaturizer(clf.text_params, backend=clf.params.backend)
        clf.featurizer_.idf_ = idf
        clf.featurizer_.keep_ = keep
        clf.featurizer_.n_documents_ = int(ckpt.meta.get("n_documents", 0))
        if isinstance(ckpt.meta.get("compression"), dict):
            clf.compression_ = dict(ckpt.meta["compression"])
        return clf
