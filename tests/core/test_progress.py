"""The shared progress record and its stop protocol."""

import pytest

from neurofabric.core.errors import ConfigError
from neurofabric.core.progress import Progress, ProgressReporter, check_callback


def test_fraction_and_eta_follow_their_definitions():
    p = Progress("t", 25, 100, "step", 5.0, {"loss": 0.5})
    assert p.fraction == 0.25
    assert p.eta_s == pytest.approx(15.0)
    assert p["loss"] == 0.5
    assert Progress("t", 0, 100, "step", 1.0).eta_s is None
    assert Progress("t", 3, None, "step", 1.0).fraction is None
    assert Progress("t", 200, 100, "step", 1.0).fraction == 1.0


def test_metrics_are_read_only_and_json_drops_non_finite():
    p = Progress("t", 1, 2, "epoch", 0.1, {"loss": float("nan"), "acc": 0.9})
    with pytest.raises(TypeError):
        p.metrics["acc"] = 1.0  # type: ignore[index]
    d = p.as_dict()
    assert d["loss"] is None and d["acc"] == 0.9 and d["task"] == "t" and d["total"] == 2


def test_reporter_stops_when_the_callback_returns_true_and_not_before():
    seen = []

    def cb(p):
        seen.append(p.done)
        return p.done >= 3

    r = ProgressReporter("t", 10, "step", cb)
    answers = [r.update(i, spikes=i * 2) for i in range(1, 5)]
    assert answers == [False, False, True, True]
    assert r.stopped and seen == [1, 2, 3, 4] and r.last["spikes"] == 8
    quiet = ProgressReporter("t", 10, "step", None)
    assert quiet.update(5) is False and quiet.last.done == 5 and not quiet.stopped


def test_a_non_callable_callback_is_refused_with_its_name():
    with pytest.raises(ConfigError, match="`callback` must be a function"):
        check_callback(3)
    assert check_callback(None) is None
