"""MUSE and DUSK numbers (unlearn_core.metrics.documents, unlearn_core.doc_eval) against values
computed by hand in this file: harmonic mean, DUSK privleak and retain deviation, both summaries
with and without the retrain reference, aggregation without generations, references (from
per-sample values, JSON round trip, from a MUSE_EVAL.json log), and open-unlearning's stored Min-K%
AUCs reproduced from the per-sample scores of its published TOFU logs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from unlearn_core import doc_eval
from unlearn_core.errors import UserError
from unlearn_core.metrics import documents as M
from unlearn_core.metrics import privacy
from unlearn_core.metrics.open_unlearning import read_mia

FIXTURES = Path(__file__).resolve().parents[2] / "shared/fixtures/open_unlearning_eval"
MODEL = "tofu_Llama-3.2-1B-Instruct"
RUNS = [f"{MODEL}_full/evals_forget{s}" for s in ("01", "05", "10")] + [
    f"{MODEL}_retain{r}" for r in ("99", "95", "90")
]

# Scores with hand-computable AUCs (label 0 = forget/retain, 1 = holdout; ranks of the pooled
# scores, ties averaged; AUC = (holdout rank sum - n1(n1+1)/2) / (n0 n1)):
SEPARATED = ([1.0, 2.0], [3.0, 4.0])  # holdout ranks 3 + 4 = 7 -> (7 - 3) / 4 = 1.0
MIXED = ([1.0, 3.0], [2.0, 4.0])  # holdout ranks 2 + 4 = 6 -> (6 - 3) / 4 = 0.75
TIED = ([1.0, 2.0], [2.0, 4.0])  # ranks 1, 2.5 | 2.5, 4 -> (6.5 - 3) / 4 = 0.875


def _mia(scores: list[float]) -> dict[str, np.ndarray]:
    """A per_sample MIA entry; the attack a family does not use gets values that would be wrong."""
    return {"mia_min_k": np.array(scores), "mia_min_k_plus_plus": -np.array(scores)}


def _muse_ps(forget: list[float], holdout: list[float], generations: bool = True) -> dict:
    ps = {"privleak_forget": _mia(forget), "privleak_holdout": _mia(holdout)}
    if generations:
        ps |= {
            "forget_knowmem": {"rougeL_f1": np.array([0.0, 0.5, 1.0])},  # mean 0.5
            "retain_knowmem": {"rougeL_f1": np.array([0.3, 0.6, 0.9])},  # mean 0.6
            "forget_verbmem": {
                "rougeL_f1": np.array([0.1, 0.3]),  # mean 0.2
                "extraction_strength": np.array([0.25, 0.75]),
            },  # mean 0.5
        }
    return ps


def _dusk_ps(generations: bool = True) -> dict:
    """forget vs holdout chunks: MIXED (AUC 0.75); retain vs holdout: TIED (AUC 0.875)."""
    ps = {
        "forget_chunks": _dusk_mia([1.0, 3.0]),
        "retain_chunks": _dusk_mia([1.0, 2.0]),
        "holdout_chunks": _dusk_mia([2.0, 4.0]),
    }
    if generations:
        ps |= {
            "verbatim": {
                "rougeL_f1": np.array([0.2, 0.4]),  # mean 0.3
                "rougeL_recall": np.array([0.5, 0.7]),
            },  # mean 0.6
            "specific_forget_qa": {"rougeL_recall": np.array([0.0, 1.0])},  # mean 0.5
            "general_qa": {"rougeL_recall": np.array([0.5, 0.5, 0.8])},  # mean 0.6
            "specific_retain_qa": {"rougeL_recall": np.array([0.4, 0.2])},  # mean 0.3
        }
    return ps


def _dusk_mia(scores: list[float]) -> dict[str, np.ndarray]:
    return {"mia_min_k_plus_plus": np.array(scores), "mia_min_k": -np.array(scores)}


DUSK_RETRAIN = {"mia_min_k_plus_plus": 0.5, "retain_mia_min_k_plus_plus": 0.7}


# ---------- metrics/documents.py ----------


def test_harmonic_mean():
    assert M.harmonic_mean([0.5, 1.0]) == pytest.approx(2 / 3)  # 2 / (2 + 1)
    assert M.harmonic_mean([0.25, 0.5, 1.0]) == pytest.approx(3 / 7)  # 3 / (4 + 2 + 1)
    assert M.harmonic_mean([0.0, 1.0]) == 0.0
    assert M.harmonic_mean([0.9, 0.0, 0.7]) == 0.0


def test_dusk_privleak_and_retain_deviation():
    assert M.dusk_privleak(0.6, 0.5) == pytest.approx(20.0)  # 0.1 / 0.5
    assert M.dusk_privleak(0.4, 0.5) == pytest.approx(-20.0)
    assert M.retain_deviation(0.45, 0.5) == pytest.approx(10.0)  # |-0.05| / 0.5
    assert M.retain_deviation(0.55, 0.5) == pytest.approx(10.0)


@pytest.mark.parametrize(("scores", "auc"), [(SEPARATED, 1.0), (MIXED, 0.75), (TIED, 0.875)])
def test_hand_computed_aucs(scores, auc):
    assert privacy.auc(*scores) == pytest.approx(auc)


@pytest.mark.parametrize(
    ("scores", "auc", "privleak"),
    # privleak = ((1 - auc) - (1 - 0.5)) / (1 - 0.5) x 100 (open-unlearning: + 1e-10 below)
    [(SEPARATED, 1.0, -100.0), (MIXED, 0.75, -50.0), (TIED, 0.875, -75.0)],
)
def test_muse_summary(scores, auc, privleak):
    m = M.muse_summary(_muse_ps(*scores), retrain_auc=0.5)
    expected = {
        "forget_knowmem_ROUGE": 0.5,
        "retain_knowmem_ROUGE": 0.6,
        "forget_verbmem_ROUGE": 0.2,
        "extraction_strength": 0.5,
        "mia_min_k": auc,
        "model_utility": 0.6,
        "privleak": privleak,
    }
    assert m == pytest.approx(expected)
    assert "privleak" not in M.muse_summary(_muse_ps(*scores), retrain_auc=None)


def test_muse_privleak_against_another_retrain_auc():
    # AUC 0.75 vs retrain 0.6: ((0.25) - (0.4)) / 0.4 x 100 = -37.5
    assert M.muse_summary(_muse_ps(*MIXED), 0.6)["privleak"] == pytest.approx(-37.5)


def test_dusk_summary():
    base = {
        "forget_verbmem_ROUGE": 0.3,
        "forget_verbmem_ROUGE_recall": 0.6,
        "forget_specific_ROUGE": 0.5,
        "shared_ROUGE": 0.6,
        "retain_specific_ROUGE": 0.3,
        "mia_min_k_plus_plus": 0.75,
        "retain_mia_min_k_plus_plus": 0.875,
        "model_utility": 0.4,
    }  # 2 / (1/0.6 + 1/0.3) = 2 / 5
    assert M.dusk_summary(_dusk_ps(), None) == pytest.approx(base)
    # privleak (0.75 - 0.5) / 0.5 = 50 %; retain deviation |0.875 - 0.7| / 0.7 = 25 %
    with_retrain = base | {"privleak": 50.0, "retain_deviation": 25.0}
    assert M.dusk_summary(_dusk_ps(), DUSK_RETRAIN) == pytest.approx(with_retrain)


def test_dusk_model_utility_collapses_with_one_ability():
    ps = _dusk_ps()
    ps["specific_retain_qa"]["rougeL_recall"] = np.zeros(2)
    assert M.dusk_summary(ps, None)["model_utility"] == 0.0


# ---------- doc_eval.py ----------


def test_muse_aggregate_without_generations_is_the_auc_and_privleak():
    ps = _muse_ps(*MIXED, generations=False)
    assert doc_eval.aggregate(doc_eval.MUSE, ps, None) == pytest.approx({"mia_min_k": 0.75})
    ref = doc_eval.DocReference("muse-news", "forget", {"mia_min_k": 0.5}, 2)
    assert doc_eval.aggregate(doc_eval.MUSE, ps, ref) == pytest.approx(
        {"mia_min_k": 0.75, "privleak": -50.0}
    )


def test_muse_aggregate_with_generations_adds_the_reference_privleak():
    ref = doc_eval.DocReference("muse-news", "forget", {"mia_min_k": 0.6}, 2)
    m = doc_eval.aggregate(doc_eval.MUSE, _muse_ps(*MIXED), ref)
    assert m == pytest.approx(
        {
            "forget_knowmem_ROUGE": 0.5,
            "retain_knowmem_ROUGE": 0.6,
            "forget_verbmem_ROUGE": 0.2,
            "extraction_strength": 0.5,
            "mia_min_k": 0.75,
            "model_utility": 0.6,
            "privleak": -37.5,
        }
    )


def test_dusk_aggregate_without_generations_is_the_aucs_and_relative_values():
    ps = _dusk_ps(generations=False)
    aucs = {"mia_min_k_plus_plus": 0.75, "retain_mia_min_k_plus_plus": 0.875}
    assert doc_eval.aggregate(doc_eval.DUSK, ps, None) == pytest.approx(aucs)
    ref = doc_eval.DocReference("dusk", "forget", DUSK_RETRAIN, 2)
    assert doc_eval.aggregate(doc_eval.DUSK, ps, ref) == pytest.approx(
        aucs | {"privleak": 50.0, "retain_deviation": 25.0}
    )


def test_dusk_aggregate_with_generations_is_the_summary():
    ref = doc_eval.DocReference("dusk", "forget", DUSK_RETRAIN, 2)
    m = doc_eval.aggregate(doc_eval.DUSK, _dusk_ps(), ref)
    assert m["model_utility"] == pytest.approx(0.4)
    assert m["privleak"] == pytest.approx(50.0)
    assert m["retain_deviation"] == pytest.approx(25.0)


def test_reference_from_per_sample_values():
    muse = doc_eval.reference_from(
        doc_eval.MUSE, _muse_ps(*MIXED, generations=False), "muse-news", "forget"
    )
    assert (muse.benchmark, muse.split, muse.n_forget) == ("muse-news", "forget", 2)
    assert muse.values == pytest.approx({"mia_min_k": 0.75})
    dusk = doc_eval.reference_from(doc_eval.DUSK, _dusk_ps(generations=False), "dusk", "forget")
    assert dusk.n_forget == 2
    assert dusk.values == pytest.approx(
        {"mia_min_k_plus_plus": 0.75, "retain_mia_min_k_plus_plus": 0.875}
    )


def test_reference_json_round_trip_and_benchmark_check(tmp_path):
    ref = doc_eval.reference_from(doc_eval.DUSK, _dusk_ps(generations=False), "dusk", "forget")
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(ref.to_json()))
    assert doc_eval.DocReference.load(path, "dusk", "forget") == ref
    with pytest.raises(UserError, match="is for dusk forget, not muse-news forget"):
        doc_eval.DocReference.load(path, "muse-news", "forget")
    with pytest.raises(UserError, match="is for dusk forget, not dusk retain"):
        doc_eval.DocReference.load(path, "dusk", "retain")
    path.write_text(json.dumps({"mia_min_k": 0.5}))
    with pytest.raises(UserError, match="no 'values'"):
        doc_eval.DocReference.load(path, "dusk", "forget")


# ---------- open-unlearning logs ----------


MUSE_LOG = {
    "mia_min_k": {
        "agg_value": 0.75,
        "forget": {"value_by_index": {"0": {"score": 1.0}, "1": {"score": 3.0}}},
        "holdout": {"value_by_index": {"0": {"score": 2.0}, "1": {"score": 4.0}}},
    }
}


@pytest.fixture
def muse_log(tmp_path) -> Path:
    path = tmp_path / "MUSE_EVAL.json"
    path.write_text(json.dumps(MUSE_LOG))
    return path


def test_read_mia_returns_forget_and_holdout_scores(muse_log):
    forget, holdout = read_mia(muse_log, "mia_min_k")
    np.testing.assert_array_equal(forget, [1.0, 3.0])
    np.testing.assert_array_equal(holdout, [2.0, 4.0])


def test_read_mia_orders_by_index_and_drops_null_samples(tmp_path):
    log = {
        "mia_min_k": {
            "forget": {"value_by_index": {"10": {"score": 5.0}, "2": {"score": 1.0}, "3": None}},
            "holdout": {"value_by_index": {"0": {"score": 2.0}}},
        }
    }
    path = tmp_path / "MUSE_EVAL.json"
    path.write_text(json.dumps(log))
    forget, holdout = read_mia(path)
    np.testing.assert_array_equal(forget, [1.0, 5.0])
    np.testing.assert_array_equal(holdout, [2.0])


def test_reference_from_muse_log(muse_log, tmp_path):
    ref = doc_eval.reference_from_muse_log(muse_log, "muse-news", "forget", n_forget=2)
    assert ref == doc_eval.DocReference("muse-news", "forget", {"mia_min_k": 0.75}, 2)
    with pytest.raises(
        UserError,
        match="hold 2 privleak forget samples but muse-news forget has 3: a log of another split",
    ):
        doc_eval.reference_from_muse_log(muse_log, "muse-news", "forget", n_forget=3)
    other = tmp_path / "OTHER.json"
    other.write_text(json.dumps({"mia_loss": MUSE_LOG["mia_min_k"]}))
    with pytest.raises(UserError, match="no mia_min_k log"):
        doc_eval.reference_from_muse_log(other, "muse-news", "forget", n_forget=2)


@pytest.fixture
def logs() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"open-unlearning eval logs not found at {FIXTURES}")
    return FIXTURES


@pytest.mark.parametrize("run", RUNS)
def test_read_mia_reproduces_the_stored_auc_of_published_logs(logs, run):
    path = logs / run / "TOFU_EVAL.json"
    stored = json.loads(path.read_text())
    if "mia_min_k" not in stored:
        pytest.skip(f"{run} has no mia_min_k log")
    forget, holdout = read_mia(path, "mia_min_k")
    assert len(forget) > 0 and len(holdout) > 0
    assert privacy.auc(forget, holdout) == pytest.approx(stored["mia_min_k"]["agg_value"], abs=1e-9)
