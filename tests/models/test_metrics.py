import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc

from models.metrics import (
    aggregate_studies,
    binary_metrics,
    cohen_kappa,
    roc_auc,
    roc_curve,
    threshold_for_sensitivity,
    threshold_for_specificity,
    youden_threshold,
)


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) + y * 0.3, 1)  # heavy ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_hand_computed():
    # pairs (pos, neg): (0.8>0.3) (0.8>0.5) (0.4>0.3) (0.4<0.5) -> 3/4
    assert roc_auc([1, 1, 0, 0], [0.8, 0.4, 0.3, 0.5]) == 0.75
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_kappa_matches_sklearn_and_hand_value():
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    assert cohen_kappa(y, p) == pytest.approx(cohen_kappa_score(y, p))
    # 2x2 table tp=20 fn=5 fp=10 tn=15: po=.7, pe=.5*.6+.5*.4=.5 -> kappa .4
    y = [1] * 25 + [0] * 25
    p = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert cohen_kappa(y, p) == pytest.approx(0.4)
    m = binary_metrics(y, p, 0.5)
    assert m["sensitivity"] == pytest.approx(0.8) and m["specificity"] == pytest.approx(0.6)


def test_roc_curve_matches_sklearn():
    rng = np.random.default_rng(2)
    y, s = rng.integers(0, 2, 100), np.round(rng.random(100), 2)
    fpr, tpr, _ = roc_curve(y, s)
    f2, t2, _ = sk_roc(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, f2)
    np.testing.assert_allclose(tpr, t2)


def test_study_aggregation_is_mean_of_images():
    ids, ys, ps = aggregate_studies(["a", "a", "b"], [1, 1, 0], [0.2, 0.6, 0.9])
    assert ids == ["a", "b"] and list(ys) == [1, 0] and ps == pytest.approx([0.4, 0.9])
    with pytest.raises(Exception, match="different labels"):
        aggregate_studies(["a", "a"], [1, 0], [0.1, 0.2])


def test_operating_points():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.25, 0.4, 0.5, 0.55, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95])
    t = threshold_for_sensitivity(y, s, 0.9)
    assert ((s[y == 1] >= t).mean()) >= 0.9
    assert t == 0.4
    yt = youden_threshold(y, s)
    assert 0.3 < yt <= 0.6


def test_specificity_threshold():
    y = np.array([0] * 10 + [1] * 3)
    s = np.array([0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.9, 0.5, 0.6, 0.95])
    t = threshold_for_specificity(y, s, 0.9)  # 9 of 10 negatives must fall below t
    assert 0.45 < t < 0.46 and (s[y == 0] < t).mean() == 0.9
    assert (s[y == 0] < threshold_for_specificity(y, s, 1.0)).all()


def test_two_distinct_operating_points():
    from models.datasources import Record
    from models.metrics import choose_thresholds

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(0.5 * y + rng.normal(0.25, 0.2, 400), 0, 1)
    recs = [Record(str(i), int(y[i]), "hand", str(i), str(i)) for i in range(400)]
    th = choose_thresholds(recs, p, 0.9)
    assert th["suspicious"] < th["likely"]
    assert (p[y == 1] >= th["suspicious"]).mean() >= 0.9
    assert (p[y == 0] < th["likely"]).mean() >= 0.95


def test_bootstrap_ci_and_ece():
    from models.metrics import bootstrap_ci, expected_calibration_error

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = y * 0.4 + rng.random(300) * 0.6
    lo, hi = bootstrap_ci(roc_auc, y, s, n=300)
    assert lo < roc_auc(y, s) < hi and hi - lo < 0.15
    assert expected_calibration_error([0, 1, 0, 1], [0.0, 1.0, 0.0, 1.0]) == 0
    # always saying 0.9 when half are positive: ECE 0.4
    assert expected_calibration_error([0, 1] * 50, [0.9] * 100) == pytest.approx(0.4)


def test_confusion_matrix_hand_computed_and_against_sklearn():
    from sklearn.metrics import confusion_matrix as sk_cm

    from models.errors import ConfigError
    from models.metrics import confusion_matrix

    y = [0, 0, 1, 2, 2, 2, 1, 0]
    p = [0, 1, 1, 2, 0, 2, 2, 0]
    # rows = truth: class 0 -> (0, 1, 0) twice 0, once 1; class 1 -> one right, one called 2; ...
    expected = np.array([[2, 1, 0], [0, 1, 1], [1, 0, 2]])
    np.testing.assert_array_equal(confusion_matrix(y, p, 3), expected)
    np.testing.assert_array_equal(confusion_matrix(y, p, 3), sk_cm(y, p, labels=[0, 1, 2]))
    np.testing.assert_array_equal(confusion_matrix(y, p, 4)[3], [0, 0, 0, 0])  # an absent class: empty row
    np.testing.assert_array_equal(confusion_matrix([1, 1, 0], [True, False, False], 2), [[1, 0], [1, 1]])
    with pytest.raises(ConfigError, match="5"):
        confusion_matrix([0, 5], [0, 0], 3)
    with pytest.raises(ConfigError, match="shape"):
        confusion_matrix([0, 1], [0], 2)


def test_reliability_bins_hand_computed_and_consistent_with_ece():
    from models.metrics import expected_calibration_error, reliability_bins

    y = [0, 1, 1, 0, 1]
    p = [0.05, 0.15, 0.95, 0.92, 1.0]  # 1.0 falls in the last bin, as in the ECE
    rb = reliability_bins(y, p, bins=10)
    assert rb["count"].tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 3]
    assert rb["mean_prob"][0] == pytest.approx(0.05) and rb["frac_pos"][1] == 1.0
    assert rb["mean_prob"][9] == pytest.approx((0.95 + 0.92 + 1.0) / 3)
    assert rb["frac_pos"][9] == pytest.approx(2 / 3) and np.isnan(rb["frac_pos"][5])
    np.testing.assert_allclose(rb["edges"], np.linspace(0, 1, 11))
    filled = rb["count"] > 0
    ece = (rb["count"][filled] / 5 * np.abs(rb["mean_prob"][filled] - rb["frac_pos"][filled])).sum()
    assert ece == pytest.approx(expected_calibration_error(y, p))
