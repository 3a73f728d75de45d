"""The small built-in benchmark is meaningful: the target answers forget questions, the retain
model does not know the forget authors (KS test of truth ratios), general knowledge is kept; the
cache is keyed by content and reused; NPO moves forget_quality up while keeping utility; mistyped
model and data paths fail before anything is built."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from unlearn_core import builtin
from unlearn_core.benchmarks import eval_data, resolve
from unlearn_core.errors import UserError
from unlearn_core.evaluate import EvalConfig
from unlearn_core.job import JobConfig, evaluate_model, get_reference, run_job
from unlearn_core.metrics import tofu
from unlearn_core.models import ModelConfig, load_model, load_tokenizer
from unlearn_core.source import Source
from unlearn_core.tofu_eval import aggregate, per_sample
from unlearn_core.train import TrainConfig

NAME = "tiny-tofu-small"


@pytest.fixture(scope="module")
def target_eval(small_benchmark):
    setup = resolve(NAME, "forget10")
    tok = load_tokenizer(setup.target_model)
    ref = get_reference(setup, tok, EvalConfig(), torch.device("cpu"))
    model = load_model(ModelConfig(setup.target_model), torch.device("cpu"))
    ps = per_sample(model, tok, setup.fmt, eval_data(setup), EvalConfig())
    return aggregate(ps, ref), ps, ref


def test_target_memorises_forget_and_keeps_general_knowledge(target_eval):
    m, _, _ = target_eval
    assert m["forget_Q_A_ROUGE"] >= 0.9
    assert m["ra_Q_A_ROUGE"] >= 0.8 and m["wf_Q_A_ROUGE"] >= 0.8
    assert m["mia_loss"] > 0.9  # the forget set looks like members against never-seen authors


def test_retain_model_does_not_know_forget_authors(target_eval):
    m, ps, ref = target_eval
    # 80 forget samples in the small variant; the default variant's 400 reach p < 1e-6
    assert m["forget_quality"] < 1e-3
    f = ps["forget"]
    target_tr = tofu.truth_ratio(f["para_avg_loss"], f["pert_avg_loss"])
    assert target_tr.mean() < ref.forget_truth_ratio.mean()  # target prefers the true facts


def test_reference_is_cached_once(small_benchmark):
    path = builtin.reference_path(NAME, "forget10")
    assert path.is_file()
    data = json.loads(path.read_text())
    assert data["split"] == "forget10" and len(data["forget_truth_ratio"]) == 80


def test_cache_key_changes_with_settings():
    base = builtin.variant_dir(NAME)
    assert base == builtin.variant_dir(NAME)
    v = builtin.VARIANTS[NAME]
    changed = dataclasses.replace(v, model=dataclasses.replace(v.model, epochs=v.model.epochs + 1))
    builtin.VARIANTS["_probe"] = changed
    try:
        assert builtin.variant_dir("_probe").name.split("-")[-1] != base.name.split("-")[-1]
    finally:
        del builtin.VARIANTS["_probe"]


JOB = JobConfig(
    method="npo",
    hparams={"beta": 0.1, "alpha": 1.0},
    source=Source(NAME, "forget10"),
    train=TrainConfig(lr=5e-4, epochs=3, batch_size=8, grad_accum=1, seed=0),
)


def test_npo_raises_forget_quality_and_keeps_utility(target_eval):
    """A setting where the effect is large on every seed: forget_quality is a p-value that spans
    10x between training seeds at one setting, and on the shipped models seeds 0, 1 and 2 raise
    it 114x, 114x and 1360x (1.6e-8 -> 1.8e-6, 1.8e-6, 2.1e-5; ROUGE 0.99 -> 0.52-0.57, utility
    0.849 -> 0.805-0.819). Asking 10x leaves an order of magnitude of margin on the worst seed,
    and kernels differ far less than seeds (the loop is stable across ATEN_CPU_CAPABILITY).
    "Before" is the target's evaluation of this module (the job's own, with the same settings)."""
    res = run_job(JOB, eval_before=False)
    b, a = target_eval[0], res.after
    assert a["forget_quality"] > 10 * b["forget_quality"]
    assert a["forget_Q_A_ROUGE"] < 0.8 * b["forget_Q_A_ROUGE"]
    assert a["model_utility"] >= 0.8 * b["model_utility"]
    assert res.train.optimizer_steps == 3 * 10 and res.train.effective_batch == 8


def test_same_seed_same_metrics(small_benchmark):
    job = dataclasses.replace(
        JOB, train=dataclasses.replace(JOB.train, epochs=1), eval=EvalConfig(generate=False)
    )
    first, second = run_job(job, eval_before=False), run_job(job, eval_before=False)
    assert first.after == second.after
    assert first.train.logs == second.train.logs


def test_mistyped_paths_fail_before_any_build(tmp_path, monkeypatch, small_benchmark):
    monkeypatch.setenv("UNLEARN_SWEEP_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError, match="'/no/such/model' is not a model folder: it does not"):
        run_job(JobConfig(method="npo", source=Source(model="/no/such/model")))
    with pytest.raises(UserError, match="'~/no/such/model' is not a model folder"):
        evaluate_model(Source(model="~/no/such/model"), EvalConfig())
    with pytest.raises(UserError, match="data path './no/such/data' is not a folder"):
        run_job(JobConfig(method="npo", source=Source(data="./no/such/data")))
    with pytest.raises(UserError, match="'/no/retain' is not a model folder"):
        resolve("tofu", "forget10", model=str(small_benchmark["target"]), retain_model="/no/retain")
    assert not (tmp_path / "cache").exists()  # nothing of the default benchmark was built


def test_altpo_jobs_sample_alternates_once_from_the_target(small_benchmark):
    from unlearn_core.job import job_context
    from unlearn_core.methods import METHODS, altpo
    from unlearn_core.suites import alternates

    views, cpu = METHODS["altpo"].views, torch.device("cpu")
    # forget01 (20 questions): 5 alternates each are 100 generations (forget10: 400, ~25 s)
    source = Source(NAME, "forget01")
    job = JobConfig(method="altpo", source=source, eval=EvalConfig(generate=False))
    ctx = job_context(job, views, cpu)
    assert len(ctx.forget) == 20 * altpo.N_ALTERNATES  # a row per alternate, as open-unlearning
    assert all("forget_alt" in ex for ex in ctx.forget)
    target = ModelConfig(ctx.setup.target_model)
    rows = alternates("forget01", ctx.setup.data, ctx.setup.fmt, target, 0, cpu, False)
    assert not any(altpo.near_copies([r["alternate"] for r in rows], [r["answer"] for r in rows]))
    hits = alternates.cache_info().hits
    job_context(dataclasses.replace(job, eval=EvalConfig(batch_size=8)), views, cpu)
    assert alternates.cache_info().hits == hits + 1  # a new trial's context reuses them


def test_stop_after_reproduces_an_epoch_of_a_longer_run(small_benchmark):
    job = dataclasses.replace(
        JOB, train=dataclasses.replace(JOB.train, epochs=2), eval=EvalConfig(generate=False)
    )
    seen = {}
    run_job(
        job,
        eval_before=False,
        eval_every=1,
        on_epoch=lambda epoch, metrics, state: seen.setdefault(epoch, (metrics, state.logs)),
    )
    short = run_job(
        dataclasses.replace(job, train=dataclasses.replace(job.train, stop_after=1)),
        eval_before=False,
    )
    assert short.train.epochs == 1 and short.train.optimizer_steps == 10
    assert short.after == seen[1][0] and short.train.logs == seen[1][1]
    assert seen[2][0] != seen[1][0]
