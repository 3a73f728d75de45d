"""TOFU metrics (unlearn_core.metrics): every function against hand-computed values on 2-5 samples,
the KS p-value floors, AUC ties, privleak's sign, the METRICS registry, and the recomputation of
open-unlearning's published Llama-3.2-1B logs (full model forget01/05/10 with retain99/95/90, and
each retain log alone) from their per-sample values."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest

from unlearn_core.errors import UserError
from unlearn_core.metrics import METRICS, open_unlearning, privacy, text, tofu

FIXTURES = Path(__file__).resolve().parents[2] / "shared/fixtures/open_unlearning_eval"
MODEL = "tofu_Llama-3.2-1B-Instruct"
SPLITS = [("01", "99"), ("05", "95"), ("10", "90")]  # forget split, matching retain model
LN2, LN4 = math.log(2), math.log(4)


# ---------- tofu.py ----------


def test_probability_is_exp_of_minus_mean_nll():
    np.testing.assert_allclose(tofu.probability(np.array([0.0, LN2, LN4])), [1.0, 0.5, 0.25])


def test_normalised_probability_uses_length_normalised_probs():
    # sample 0: P = 1/2, wrong = 1/4 + 1/4 + 1/2 -> 0.5 / 1.5; sample 1: P = 1, wrong = 3 * 1/4
    got = tofu.normalised_probability(
        np.array([LN2, 0.0]), np.array([[LN4, LN4, LN2], [LN4, LN4, LN4]])
    )
    np.testing.assert_allclose(got, [1 / 3, 1 / 1.75], rtol=1e-9)


def test_truth_ratio_and_its_aggregators():
    correct = np.array([LN2, 0.0, LN4])  # P = 1/2, 1, 1/4
    wrong = np.array([[0.0, LN4], [LN4, LN4], [0.0, 0.0]])  # geometric means 1/2, 1/4, 1
    tr = tofu.truth_ratio(correct, wrong)
    np.testing.assert_allclose(tr, [1.0, 0.25, 4.0], rtol=1e-9)  # wrong / correct
    assert tofu.truth_ratio_closer_to_1(tr) == pytest.approx((1 + 0.25 + 0.25) / 3)
    assert tofu.truth_ratio_true_better(tr) == pytest.approx((0 + 0.75 + 0) / 3)


def test_truth_ratio_is_geometric_not_arithmetic_mean_of_wrong_probs():
    # wrong probs 1 and 1/4: geometric mean 1/2 (arithmetic would be 0.625)
    assert tofu.truth_ratio(np.array([0.0]), np.array([[0.0, LN4]]))[0] == pytest.approx(0.5)


def test_truth_ratio_stays_finite_for_hopeless_answers():
    # P(correct) underflows: open-unlearning's +1e-10 caps TR at P(wrong) / 1e-10
    tr = tofu.truth_ratio(np.array([2000.0, 0.0]), np.array([[0.0], [2000.0]]))
    np.testing.assert_allclose(tr, [1e10, 0.0])
    assert tofu.truth_ratio_closer_to_1(tr) == pytest.approx(0.5e-10)


def test_truth_ratio_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shapes"):
        tofu.truth_ratio(np.zeros(3), np.zeros(3))


@pytest.mark.parametrize(("n", "floor"), [(40, 1.86e-23), (200, 1.94e-119), (400, 1.06e-239)])
def test_forget_quality_floor_at_complete_separation(n, floor):
    separated = tofu.forget_quality(np.linspace(0.1, 0.2, n), np.linspace(5.0, 6.0, n))
    assert separated == pytest.approx(floor, rel=1e-2)
    assert separated == pytest.approx(2 / math.comb(2 * n, n), rel=1e-9)


def test_forget_quality_of_identical_samples_is_one():
    tr = np.array([0.3, 0.7, 1.2, 2.0])
    assert tofu.forget_quality(tr, tr) == pytest.approx(1.0)


def test_model_utility_is_harmonic_mean_of_the_nine_components():
    values = dict.fromkeys(tofu.MODEL_UTILITY_KEYS, 0.5) | {"retain_Q_A_Prob": 1.0, "other": 0.0}
    assert tofu.model_utility(values) == pytest.approx(9 / (1 + 8 * 2))


def test_model_utility_with_a_zero_component_is_zero():
    assert (
        tofu.model_utility(dict.fromkeys(tofu.MODEL_UTILITY_KEYS, 0.5) | {"wf_Q_A_ROUGE": 0}) == 0
    )


def test_model_utility_names_a_missing_component():
    values = dict.fromkeys(tofu.MODEL_UTILITY_KEYS[:-1], 0.5)
    with pytest.raises(ValueError, match="wf_Truth_Ratio"):
        tofu.model_utility(values)


# ---------- text.py ----------


def test_rouge_recall_f1_and_stemming():
    got = text.rouge_scores(
        ["The cat sat on the mat", "cats running", "a b c d"], ["the cat sat", "cat runs", ""]
    )
    np.testing.assert_allclose(got["rouge1_recall"], [3 / 6, 1.0, 0.0])
    np.testing.assert_allclose(got["rougeL_recall"], [3 / 6, 1.0, 0.0])
    np.testing.assert_allclose(got["rougeL_f1"], [2 * 0.5 * 1 / 1.5, 1.0, 0.0])


def test_rouge_l_is_subsequence_based():
    # LCS("a b c d", "a c b d") = 3 tokens (a b d or a c d); rouge1 sees all 4
    got = text.rouge_scores(["a b c d"], ["a c b d"])
    assert got["rougeL_recall"][0] == pytest.approx(0.75)
    assert got["rouge1_recall"][0] == pytest.approx(1.0)


# ---------- privacy.py ----------


def test_loss_and_zlib_scores():
    avg_loss = np.array([2.0, 3.0])
    texts = ["aaaaaaaaaaaaaaaaaaaa", "The quick brown fox"]
    np.testing.assert_array_equal(privacy.mia_loss_scores(avg_loss), avg_loss)
    sizes = [len(zlib.compress(t.encode())) for t in texts]
    np.testing.assert_allclose(privacy.mia_zlib_scores(avg_loss, texts), avg_loss / sizes)
    assert sizes[0] < sizes[1]  # a repetitive text compresses, so its score is higher per nat


def test_min_k_picks_the_lowest_floor_k_fraction():
    logprobs = [
        np.array([-0.1, -5.0, -0.2, -3.0, -0.3]),  # floor(0.4 * 5) = 2: -5, -3
        np.array([-1.0, -2.0, -3.0, -4.0]),  # floor(1.6) = 1 (a ceil would take 2): -4
        np.array([-0.5, -0.7]),  # floor(0.8) = 0 -> at least 1 token: -0.7
    ]
    np.testing.assert_allclose(privacy.mia_min_k_scores(logprobs), [4.0, 4.0, 0.7])
    np.testing.assert_allclose(privacy.mia_min_k_scores(logprobs, k=1.0), [1.72, 2.5, 0.6])


def test_min_k_plus_plus_uses_z_scores_and_floors_std():
    # z = ((-1 + 1.5) / 0.5, (-2 + 1) / 2) = (1, -0.5); lowest 1 of 2 -> 0.5
    got = privacy.mia_min_k_plus_plus_scores(
        [np.array([-1.0, -2.0]), np.array([-1.0])],
        [np.array([-1.5, -1.0]), np.array([-1.0005])],
        [np.array([0.5, 2.0]), np.array([0.0])],  # std 0 -> 1e-3: z = 0.5
    )
    np.testing.assert_allclose(got, [0.5, -0.5])


def test_auc_counts_ties_half():
    # holdout above forget in 3 of 4 pairs, one tie: (3 + 0.5) / 4
    assert privacy.auc(np.array([1.0, 2.0]), np.array([2.0, 3.0])) == pytest.approx(0.875)
    assert privacy.auc(np.array([0.0, 1.0]), np.array([5.0, 6.0])) == 1.0
    assert privacy.auc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5


def test_auc_equals_pairwise_count():
    rng = np.random.default_rng(0)
    forget, holdout = rng.integers(0, 5, 30).astype(float), rng.integers(0, 7, 20).astype(float)
    diff = holdout[None, :] - forget[:, None]
    assert privacy.auc(forget, holdout) == pytest.approx(np.mean((diff > 0) + 0.5 * (diff == 0)))


def test_privleak_sign():
    assert privacy.privleak(1.0, 0.5) == pytest.approx(-100.0)  # memorised: under-unlearned
    assert privacy.privleak(0.5, 0.5) == pytest.approx(0.0)
    assert privacy.privleak(0.25, 0.5) == pytest.approx(50.0)  # over-unlearned
    assert privacy.privleak(0.99665, 0.3826125) == pytest.approx(-99.45739100654656, rel=1e-12)


def test_extraction_strength_and_exact_memorization():
    labels = [np.array([5, 6, 7, 8])] * 5
    preds = [
        np.array([5, 6, 7, 8]),  # all match: k = 0, ES = 1
        np.array([0, 6, 7, 8]),  # suffix from 1 matches: ES = 1 - 1/4
        np.array([5, 0, 7, 8]),  # suffix from 2 matches: ES = 1 - 2/4
        np.array([5, 6, 7, 0]),  # last token wrong: k stays 3 in open-unlearning's loop -> 1/4
        np.array([0, 0, 0, 0]),  # nothing matches: also the 1/n floor
    ]
    np.testing.assert_allclose(
        privacy.extraction_strength(preds, labels), [1.0, 0.75, 0.5, 0.25, 0.25]
    )
    np.testing.assert_allclose(
        privacy.exact_memorization(preds, labels), [1.0, 0.75, 0.75, 0.75, 0.0]
    )


def test_extraction_strength_equals_open_unlearning_loop():
    def reference(pred: np.ndarray, label: np.ndarray) -> float:  # memorization.py, verbatim logic
        for k in range(len(label)):
            if np.array_equal(pred[k:], label[k:]):
                break
        return 1 - k / len(label)

    rng = np.random.default_rng(1)
    labels = [rng.integers(0, 3, n) for n in rng.integers(1, 12, 200)]
    preds = [np.where(rng.random(len(y)) < 0.7, y, rng.integers(0, 3, len(y))) for y in labels]
    expected = [reference(p, y) for p, y in zip(preds, labels, strict=True)]
    np.testing.assert_allclose(privacy.extraction_strength(preds, labels), expected)


def test_token_metrics_reject_mismatched_or_empty_samples():
    with pytest.raises(ValueError, match="sample 0"):
        privacy.extraction_strength([np.array([1, 2])], [np.array([1])])
    with pytest.raises(ValueError, match="sample 0"):
        privacy.exact_memorization([np.array([], dtype=int)], [np.array([], dtype=int)])


# ---------- registry ----------


def test_registry_names_every_tofu_aggregate_with_a_direction():
    assert set(tofu.MODEL_UTILITY_KEYS) <= set(METRICS)
    assert {"forget_quality", "forget_truth_ratio", "privleak", "extraction_strength"} <= set(
        METRICS
    )
    assert len(METRICS) == 21
    assert METRICS["forget_Q_A_ROUGE"].higher_is_better is False
    assert METRICS["privleak"].higher_is_better is None


@pytest.mark.parametrize("name", list(METRICS))
def test_registry_entry_is_described(name):
    assert METRICS[name].higher_is_better in (True, False, None)
    assert METRICS[name].description


# ---------- open-unlearning logs ----------


@pytest.fixture
def logs() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"open-unlearning eval logs not found at {FIXTURES}")
    return FIXTURES


def _paths(root: Path, run: str) -> tuple[Path, dict, dict]:
    folder = root / run
    log = json.loads((folder / "TOFU_EVAL.json").read_text())
    return folder / "TOFU_EVAL.json", log, json.loads((folder / "TOFU_SUMMARY.json").read_text())


def _assert_reproduces(recomputed: dict, log: dict, summary: dict) -> None:
    """Every recomputed number equals the stored summary value, else the log's agg_value."""
    assert set(recomputed) <= set(METRICS)
    assert set(summary) - set(recomputed) <= {"mia_gradnorm", "mia_reference"}  # not reported
    for name, value in recomputed.items():
        stored = summary[name] if name in summary else log[name]["agg_value"]
        # KS p-values: 1e-3; the rest differ from the stored float32 `prob` by < 2e-8
        assert value == pytest.approx(stored, rel=1e-3 if name == "forget_quality" else 1e-6), name


@pytest.mark.parametrize(("forget", "retain"), SPLITS)
def test_full_model_summary_is_reproduced_from_per_sample_values(logs, forget, retain):
    path, log, summary = _paths(logs, f"{MODEL}_full/evals_forget{forget}")
    retain_path = logs / f"{MODEL}_retain{retain}/TOFU_EVAL.json"
    recomputed = open_unlearning.recompute_summary(path, retain_path)
    assert "forget_quality" in recomputed and "privleak" in recomputed
    _assert_reproduces(recomputed, log, summary)


@pytest.mark.parametrize("retain", ["99", "95", "90"])
def test_retain_model_summary_is_reproduced_with_default_privleak_reference(logs, retain):
    path, log, summary = _paths(logs, f"{MODEL}_retain{retain}")
    recomputed = open_unlearning.recompute_summary(path)
    assert "forget_quality" not in recomputed and log["forget_quality"]["agg_value"] is None
    _assert_reproduces(recomputed, log, summary)
    reference = privacy.privleak(recomputed["mia_min_k"], privacy.DEFAULT_RETAIN_AUC)
    assert recomputed["privleak"] == reference


@pytest.mark.parametrize("run", [f"{MODEL}_full/evals_forget10", f"{MODEL}_retain90"])
def test_per_sample_values_match_the_log(logs, run):
    path, log, _ = _paths(logs, run)
    values = open_unlearning.read_tofu_eval(path)

    def stored(name: str, field: str = "score") -> np.ndarray:
        return np.array([v[field] for v in log[name]["value_by_index"].values()])

    for split, name in [("forget", "forget_truth_ratio"), ("retain", "retain_Truth_Ratio")]:
        tr = open_unlearning.split_truth_ratio(values, split)
        np.testing.assert_allclose(tr, stored(name), rtol=1e-12)
    np.testing.assert_array_equal(values["forget_truth_ratio"], stored("forget_truth_ratio"))
    for split in ("ra", "wf"):
        tr = open_unlearning.split_truth_ratio(values, split)
        np.testing.assert_allclose(tr, stored(f"{split}_Truth_Ratio"), rtol=1e-12)
        p_norm = tofu.normalised_probability(
            values[f"{split}_Q_A_Prob_avg_loss"], values[f"{split}_Q_A_PERT_Prob_avg_loss"]
        )
        np.testing.assert_allclose(
            p_norm, stored(f"{split}_Q_A_Prob_normalised", "prob"), rtol=1e-6
        )
    prob = tofu.probability(values["forget_Q_A_Prob_avg_loss"])
    np.testing.assert_allclose(prob, stored("forget_Q_A_Prob", "prob"), rtol=1e-6)
    for name in open_unlearning.MIA_LOGS + ("mia_gradnorm",):
        forget, holdout = (
            np.array([v["score"] for v in log[name][side]["value_by_index"].values()])
            for side in ("forget", "holdout")
        )
        assert privacy.auc(forget, holdout) == pytest.approx(log[name]["auc"], rel=1e-12), name


def test_rouge_and_mia_scores_are_recomputed_from_stored_text(logs):
    path, log, _ = _paths(logs, f"{MODEL}_full/evals_forget10")
    for name in open_unlearning.ROUGE_LOGS:
        entries = list(log[name]["value_by_index"].values())
        got = text.rouge_scores(
            [e["ground_truth"] for e in entries], [e["generation"] for e in entries]
        )
        for field in open_unlearning.ROUGE_FIELDS:
            np.testing.assert_allclose(got[field], [e[field] for e in entries], rtol=1e-12)
    values = open_unlearning.read_tofu_eval(path)
    loss = privacy.mia_loss_scores(values["forget_Q_A_Prob_avg_loss"])
    np.testing.assert_array_equal(loss, values["mia_loss_forget"])
    answers = [e["ground_truth"] for e in log["forget_Q_A_ROUGE"]["value_by_index"].values()]
    np.testing.assert_allclose(
        privacy.mia_zlib_scores(loss, answers), values["mia_zlib_forget"], rtol=1e-12
    )


def test_logged_extraction_strength_has_the_one_over_n_floor(logs):
    # The retain model must miss the last answer token somewhere in 400 forget samples, yet no
    # logged ES is 0: open-unlearning's loop floors ES at 1/n, as privacy.extraction_strength does.
    values = open_unlearning.read_tofu_eval(logs / f"{MODEL}_retain90/TOFU_EVAL.json")
    assert values["extraction_strength"].min() > 0


def test_reader_errors_are_user_errors(logs, tmp_path):
    with pytest.raises(UserError, match="not found"):
        open_unlearning.recompute_summary(tmp_path / "missing.json")
    log = json.loads((logs / f"{MODEL}_retain99/TOFU_EVAL.json").read_text())
    del log["wf_Q_A_PERT_Prob"]
    broken = tmp_path / "TOFU_EVAL.json"
    broken.write_text(json.dumps(log))
    with pytest.raises(UserError, match="wf_Q_A_PERT_Prob"):
        open_unlearning.read_tofu_eval(broken)
    with pytest.raises(UserError, match="same forget split"):
        open_unlearning.recompute_summary(
            logs / f"{MODEL}_full/evals_forget01/TOFU_EVAL.json",
            logs / f"{MODEL}_retain90/TOFU_EVAL.json",
        )
