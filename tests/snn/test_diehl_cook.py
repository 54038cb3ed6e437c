"""The Diehl & Cook pipeline on scikit-learn's digits (8 x 8, shipped with scikit-learn)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from neurofabric.core.checkpoint import load_checkpoint
from neurofabric.core.errors import CheckpointError, ConfigError, NotFittedError, ShapeError
from neurofabric.snn.diehl_cook import DiehlCookClassifier

PARAMS = {"n_neurons": 50, "seed": 0, "norm_per_input": 0.3, "theta_plus": 0.2e-3}


@pytest.fixture(scope="module")
def digits():
    return load_digits(return_X_y=True)


def test_learning_beats_chance_and_an_untrained_network(digits):
    x, y = digits
    progress = []
    trained = DiehlCookClassifier(**PARAMS).fit(x[:300], y[:300], callback=progress.append)
    assert len(progress) == 300 and progress[-1]["images_per_s"] > 0
    assert progress[-1].task == "snn.diehl_cook.fit" and progress[-1].unit == "image"
    # the running estimate starts once labels exist (after 250 images), above chance
    assert progress[249]["accuracy"] is None
    assert 0.15 < progress[-1]["accuracy"] <= 1.0
    acc = trained.score(x[1500:1700], y[1500:1700])
    untrained = DiehlCookClassifier(**PARAMS).fit(x[:1], y[:1], label_images=0)
    untrained.classes_ = np.arange(10)
    untrained.relabel(x[:300], y[:300])
    acc_untrained = untrained.score(x[1500:1700], y[1500:1700])
    # measured 0.465 against 0.28 untrained (chance 0.10)
    assert acc > 0.35
    assert acc > acc_untrained + 0.08
    w = trained.input_weights_
    # non-negative and normalized per neuron (normalization may lift a weight above w_max
    # until the next plastic update clips it, as in Diehl & Cook's procedure)
    assert w.shape == (50, 64) and np.all(w >= 0)
    np.testing.assert_allclose(w.sum(axis=1), 0.3 * 64, rtol=1e-4)


def test_bad_input(digits):
    x, y = digits
    with pytest.raises(ShapeError, match="labels"):
        DiehlCookClassifier(n_neurons=5).fit(x[:10], y[:9])
    with pytest.raises(ConfigError, match="non-negative"):
        DiehlCookClassifier(n_neurons=5).fit(-x[:10], y[:10])
    with pytest.raises(ConfigError, match="max_rate"):
        DiehlCookClassifier(max_rate=0.0)
    with pytest.raises(ConfigError, match="'paper', 'code'"):
        DiehlCookClassifier(rule="triplet")
    code = DiehlCookClassifier(rule="code").rule
    assert code.a3_plus == 0.01 and code.a2_minus == 1e-4 and code.interaction == "nearest"
    with pytest.raises(NotFittedError):
        DiehlCookClassifier(n_neurons=5).predict(x[:2])
    clf = DiehlCookClassifier(n_neurons=5).fit(x[:5], y[:5], label_images=None)
    with pytest.raises(ShapeError, match="64 pixels"):
        clf.predict(np.zeros((2, 10)))


def test_report_save_load_and_plots(digits, tmp_path):
    from neurofabric.snn.plots import plot_confusion, plot_receptive_fields

    x, y = digits
    clf = DiehlCookClassifier(**{**PARAMS, "n_neurons": 20}).fit(x[:60], y[:60])
    from sklearn.metrics import confusion_matrix, f1_score

    from neurofabric.core.metrics import classification_report

    # each presentation draws new Poisson spikes: score one fixed prediction
    pred = clf.predict(x[1500:1560])
    rep = classification_report(y[1500:1560], pred, 10)
    np.testing.assert_array_equal(
        rep["confusion"], confusion_matrix(y[1500:1560], pred, labels=range(10))
    )
    assert rep["macro_f1"] == pytest.approx(f1_score(y[1500:1560], pred, average="macro"))
    assert rep["accuracy"] == pytest.approx(np.mean(pred == y[1500:1560]))
    assert clf.report(x[1500:1510], y[1500:1510])["confusion"].sum() == 10
    clf.save(tmp_path / "model")
    back = DiehlCookClassifier.load(tmp_path / "model")
    np.testing.assert_array_equal(back.assignments_, clf.assignments_)
    np.testing.assert_array_equal(back.input_weights_, clf.input_weights_)
    np.testing.assert_array_equal(back.predict(x[1500:1510]), clf.predict(x[1500:1510]))
    assert plot_confusion(rep["confusion"], tmp_path / "c.png").stat().st_size > 1000
    assert (
        plot_receptive_fields(
            clf.input_weights_, tmp_path / "r.png", image_shape=(8, 8), labels=clf.assignments_
        )
        .stat()
        .st_size
        > 1000
    )


def test_checkpoint_resume_equals_an_uninterrupted_run(digits, tmp_path):
    x, y = digits
    p = {**PARAMS, "n_neurons": 12}
    full = DiehlCookClassifier(**p).fit(x[:40], y[:40], label_images=None)
    ck = tmp_path / "ck"
    seen = []
    DiehlCookClassifier(**p).fit(
        x[:40],
        y[:40],
        label_images=None,
        checkpoint=ck,
        checkpoint_every=15,
        callback=lambda pr: seen.append(pr.done),
    )
    assert seen == list(range(1, 41))

    # interrupt: keep only the state after 30 images by training on a stopping callback
    class Stop(Exception):
        pass

    def stop_at_31(pr):
        if pr.done == 31:
            raise Stop

    ck2 = tmp_path / "ck2"
    with pytest.raises(Stop):
        DiehlCookClassifier(**p).fit(
            x[:40],
            y[:40],
            label_images=None,
            checkpoint=ck2,
            checkpoint_every=15,
            callback=stop_at_31,
        )
    resumed_from = []
    back = DiehlCookClassifier(**p).fit(
        x[:40],
        y[:40],
        label_images=None,
        checkpoint=ck2,
        checkpoint_every=15,
        resume=True,
        callback=lambda pr: resumed_from.append(pr.done),
    )
    assert resumed_from[0] == 31  # continued after the checkpoint at 30 images
    np.testing.assert_array_equal(back.input_weights_, full.input_weights_)
    np.testing.assert_array_equal(back.net_.theta_, full.net_.theta_)
    np.testing.assert_array_equal(back.assignments_, full.assignments_)
    with pytest.raises(CheckpointError, match="other"):
        DiehlCookClassifier(**{**p, "theta_plus": 1e-3}).fit(
            x[:40], y[:40], checkpoint=ck2, resume=True
        )
    with pytest.raises(CheckpointError, match="other"):
        DiehlCookClassifier(**p).fit(x[1:41], y[1:41], checkpoint=ck2, resume=True)


def test_a_stopped_fit_leaves_a_checkpoint_there_and_a_usable_classifier(digits, tmp_path):
    x, y = digits
    p = {**PARAMS, "n_neurons": 12}
    full = DiehlCookClassifier(**p).fit(x[:40], y[:40], label_images=None)
    ck = tmp_path / "ck"
    seen = []

    def stop_after_17(pr):
        seen.append(pr.done)
        return pr.done == 17

    clf = DiehlCookClassifier(**p).fit(
        x[:40],
        y[:40],
        label_images=None,
        checkpoint=ck,
        checkpoint_every=10,
        callback=stop_after_17,
    )
    assert clf.stopped_ and not full.stopped_ and seen == list(range(1, 18))
    assert load_checkpoint(ck / "classifier").meta["done"] == 17  # written where it stopped
    assert clf.predict(x[100:110]).shape == (10,)  # labelled from the 17 images it saw
    assert set(clf.assignments_) <= set(y[:40])
    back = DiehlCookClassifier(**p).fit(
        x[:40], y[:40], label_images=None, checkpoint=ck, checkpoint_every=10, resume=True
    )
    assert not back.stopped_
    np.testing.assert_array_equal(back.input_weights_, full.input_weights_)
    np.testing.assert_array_equal(back.net_.theta_, full.net_.theta_)
    np.testing.assert_array_equal(back.assignments_, full.assignments_)


@pytest.mark.parametrize("bits", [4, 2])
def test_quantization_aware_learning_keeps_weights_on_the_grid(digits, bits):
    x, y = digits
    clf = DiehlCookClassifier(**{**PARAMS, "n_neurons": 20, "weight_bits": bits})
    clf.fit(x[:60], y[:60], label_images=0)
    w = clf.input_weights_.astype(np.float64)
    levels = 2 ** (bits - 1) - 1
    scale = np.abs(w).max(axis=1, keepdims=True) / levels
    codes = w / scale
    # every weight the network uses is an integer multiple of its neuron's scale
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-3)
    assert len(np.unique(np.round(codes))) <= levels + 1
    with pytest.raises(ConfigError, match="weight_bits"):
        DiehlCookClassifier(weight_bits=3)


def test_post_training_stp_changes_responses_and_switches_off(digits):
    from neurofabric.snn.stp import ShortTermPlasticity

    x, y = digits
    clf = DiehlCookClassifier(**{**PARAMS, "n_neurons": 10}).fit(x[:30], y[:30], label_images=0)
    w = clf.input_weights_.copy()
    plain = clf.responses(x[100:110])
    clf.set_stp(ShortTermPlasticity(U=0.5, tau_rec=0.3, mode="release"))
    depressed = clf.responses(x[100:110])
    assert depressed.sum() < plain.sum()  # depression weakens the drive
    np.testing.assert_array_equal(clf.input_weights_, w)  # weights frozen
    clf.set_stp(None)
    assert clf.net_.stp_.ext.prm.size == 0


def test_quantize_input_weights_after_training(digits):
    x, y = digits
    clf = DiehlCookClassifier(**{**PARAMS, "n_neurons": 16}).fit(x[:40], y[:40], label_images=0)
    before = clf.input_weights_.astype(np.float64)
    q = clf.quantize_input_weights(4)
    after = clf.input_weights_.astype(np.float64)
    scale = np.abs(before).max(axis=1, keepdims=True) / 7
    assert np.all(np.abs(after - before) <= scale / 2 + 1e-6)  # at most half a step
    np.testing.assert_allclose(after / scale, np.round(after / scale), atol=1e-3)
    # 16 x 64 codes of 4 bits = 512 bytes, plus 16 float scales and zero points
    assert q.nbytes == 16 * 64 // 2 + q.scales.nbytes + q.zero_points.nbytes
    with pytest.raises(ConfigError, match="bits"):
        clf.quantize_input_weights(3)


def test_resume_is_strict(digits, tmp_path):
    x, y = digits
    p = {**PARAMS, "n_neurons": 6}
    with pytest.raises(CheckpointError, match="holds no training checkpoint"):
        DiehlCookClassifier(**p).fit(x[:10], y[:10], checkpoint=tmp_path / "none", resume=True)
    assert not (tmp_path / "none").exists()
    with pytest.raises(ConfigError, match="`resume=True` needs `checkpoint`"):
        DiehlCookClassifier(**p).fit(x[:10], y[:10], resume=True)
    ck = tmp_path / "ck"
    DiehlCookClassifier(**p).fit(
        x[:10], y[:10], label_images=None, checkpoint=ck, checkpoint_every=5
    )
    before = (ck / "classifier" / "manifest.json").read_bytes()
    with pytest.raises(CheckpointError, match="already holds a training checkpoint"):
        DiehlCookClassifier(**p).fit(x[:10], y[:10], checkpoint=ck)
    assert (ck / "classifier" / "manifest.json").read_bytes() == before  # not overwritten
    # a corrupted network file is caught by its checksum on resume
    victim = ck / "network" / "state.v.arrow"
    data = bytearray(victim.read_bytes())
    data[-60] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        DiehlCookClassifier(**p).fit(x[:10], y[:10], checkpoint=ck, resume=True)
