"""Classification metrics shared by the engines (no scikit-learn needed at run time)."""

from __future__ import annotations

from typing import Any

import numpy as np

from neurofabric.core.errors import ShapeError


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int | None = None) -> np.ndarray:
    """Counts ``[true class, predicted class]`` for integer labels 0..n_classes-1."""
    t = np.asarray(y_true).astype(np.int64)
    p = np.asarray(y_pred).astype(np.int64)
    if t.shape != p.shape or t.ndim != 1:
        raise ShapeError(
            f"`y_true` and `y_pred` must be equal-length vectors, got {t.shape} and {p.shape}"
        )
    k = int(n_classes if n_classes is not None else max(t.max(initial=-1), p.max(initial=-1)) + 1)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def classification_report(y_true: Any, y_pred: Any, n_classes: int | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class precision, recall (per-class accuracy) and support."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(
        2 * precision * recall,
        precision + recall,
        out=np.zeros_like(tp),
        where=(precision + recall) > 0,
    )
    present = support > 0
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
        "confusion": cm,
    }
