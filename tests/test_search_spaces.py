"""Search spaces: one per registered method, every sampled point builds the method's Hparams and a
TrainConfig, Optuna records what the space returns (and a FixedTrial replays it), and --fix,
--space overrides and both presets behave; bad ranges are user errors; the study is told its
metric names."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from search_spaces import REFERENCES, SPACES, reference_point
from search_spaces._common import (
    BATCH_KEYS,
    OPTIMIZER_KEYS,
    PRESETS,
    Range,
    SpaceOptions,
    parse_range,
)
from unlearn_core.builtin import TinyModelConfig
from unlearn_core.errors import UserError
from unlearn_core.methods import METHODS
from unlearn_core.train import TrainConfig

# values a space computes from sampled ones instead of sampling them
DERIVED = {"rmu": {"trainable_layers"}, "grun": {"layers"}}
N_TRIALS = 5

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sample(method: str, opts: SpaceOptions, n: int = N_TRIALS, seed: int = 0):
    """(trial, returned dict) for n trials of a random-sampler study."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((trial, SPACES[method](trial, opts)))
    return out


def split(params: dict) -> tuple[dict, dict]:
    opt = {k: v for k, v in params.items() if k in OPTIMIZER_KEYS}
    return opt, {k: v for k, v in params.items() if k not in OPTIMIZER_KEYS}


def test_every_method_has_a_space():
    assert set(SPACES) == set(METHODS)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("method", sorted(SPACES))
def test_sampled_points_build_and_replay(method, preset):
    opts = SpaceOptions(preset)
    fields = {f.name for f in dataclasses.fields(METHODS[method].hparams)}
    for trial, params in sample(method, opts):
        opt, hp = split(params)
        assert set(opt) == set(OPTIMIZER_KEYS)
        assert set(hp) <= fields, f"{method}: {set(hp) - fields} are not Hparams fields"
        METHODS[method].make_hparams(hp)
        TrainConfig(**opt)
        assert isinstance(opt["epochs"], int)
        # Optuna recorded exactly the sampled values; the rest is derived from them
        assert trial.params == {k: params[k] for k in trial.params}
        assert set(params) - set(trial.params) <= DERIVED.get(method, set())
        assert SPACES[method](optuna.trial.FixedTrial(trial.params), opts) == params


FAMILIES = ("tofu", "muse", "dusk")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("method", sorted(SPACES))
def test_reference_point_lies_inside_the_space_and_replays(method, preset, family):
    """A sweep evaluates the reference point first: every searched value is in range, and the
    space replayed on it returns it (derived values included), so the trial runs what it cites."""
    opts = SpaceOptions(preset, family=family)
    ref = reference_point(method, opts)
    point = {k: r.value for k, r in ref.items() if k not in BATCH_KEYS}
    ((trial, _),) = sample(method, opts, n=1)
    for name, dist in trial.distributions.items():
        value = point[name]
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            assert value in dist.choices, (name, value)
        else:
            assert dist.low <= value <= dist.high, (name, value, dist)
    searched = {k: v for k, v in point.items() if k in trial.distributions}
    replayed = SPACES[method](optuna.trial.FixedTrial(searched), opts)
    assert {k: replayed[k] for k in point} == point
    opt, hp = split(replayed)
    METHODS[method].make_hparams(hp)
    TrainConfig(**opt, **{k: ref[k].value for k in BATCH_KEYS})


@pytest.mark.parametrize("method", sorted(SPACES))
def test_every_reference_value_cites_a_source(method):
    assert set(REFERENCES) == set(SPACES)
    for preset in PRESETS:
        ref = reference_point(method, SpaceOptions(preset))
        ((trial, _),) = sample(method, SpaceOptions(preset), n=1)
        assert set(trial.distributions) <= set(ref), f"{method}: no reference for a parameter"
        for name, r in ref.items():
            assert isinstance(r.source, str) and len(r.source) > 8, (method, preset, name)


def test_optimizer_reference_follows_the_benchmark():
    """open-unlearning's MUSE setting (constant, no warmup or decay, 4 x 8) and TOFU's (linear,
    1 warmup epoch, decay 0.01, 8 x 4) on real models; tiny keeps its measured setting."""
    muse = {
        k: r.value for k, r in reference_point("npo", SpaceOptions("llm", family="muse")).items()
    }
    assert muse["schedule"] == "constant" and muse["warmup_epochs"] == muse["weight_decay"] == 0
    assert (muse["batch_size"], muse["grad_accum"]) == (4, 8)
    tofu = {k: r.value for k, r in reference_point("npo", SpaceOptions("llm")).items()}
    assert (tofu["schedule"], tofu["warmup_epochs"], tofu["weight_decay"]) == ("linear", 1.0, 0.01)
    assert (tofu["batch_size"], tofu["grad_accum"], tofu["lr"]) == (8, 4, 1e-5)
    tiny = reference_point("npo", SpaceOptions("tiny", family="muse"))
    assert tiny["lr"].value == 1e-3 and tiny["schedule"].value == "linear"


def test_methods_own_optimizer_reference_on_real_models():
    """GRUN's lr 4e-3 for about 520 steps without warmup or decay, UNDIAL's lr 1e-4 with the README
    grid's 3e-4 in range, DualOptim's 5 forget passes (30 epochs at 1:5)."""
    llm = SpaceOptions("llm")
    grun = {k: r.value for k, r in reference_point("grun", llm).items()}
    assert (grun["lr"], grun["epochs"], grun["warmup_epochs"], grun["weight_decay"]) == (
        4e-3,
        40,
        0.0,
        0.0,
    )
    assert reference_point("undial", llm)["lr"].value == 1e-4
    ((trial, _),) = sample("undial", llm, n=1)
    assert trial.distributions["lr"].high >= 3e-4
    dual = reference_point("dual_optim", llm)
    passes = dual["forget_freq"].value / (dual["forget_freq"].value + dual["retain_freq"].value)
    assert dual["epochs"].value * passes == 5
    ((trial, _),) = sample("dual_optim", llm, n=1)
    assert trial.distributions["epochs"].high * passes >= 5
    # elsewhere the benchmark's: tiny keeps the measured values
    assert reference_point("grun", SpaceOptions("tiny"))["lr"].value == 1e-3


@pytest.mark.parametrize(
    ("n_layers", "layer", "trainable", "grun_layers"),
    [(32, 7, (5, 6, 7), (20, 25, 31)), (16, 4, (2, 3, 4), (10, 12, 15)), (28, 6, (4, 5, 6), None)],
)
def test_layers_are_fractions_of_depth(n_layers, layer, trainable, grun_layers):
    """RMU's layer 7 of 32 and GRUN's 20, 25, 31 of 32 scale with the target model's depth, and
    the llm space reaches them; the paper's RMU alpha 1200 on real models."""
    opts = SpaceOptions("llm", n_layers=n_layers)
    rmu = reference_point("rmu", opts)
    assert (rmu["layer"].value, rmu["trainable_layers"].value) == (layer, trainable)
    assert rmu["alpha"].value == 1200.0
    ((trial, params),) = sample("rmu", opts, n=1)
    assert trial.distributions["layer"].high < n_layers
    grun = reference_point("grun", opts)["layers"].value
    assert max(grun) < n_layers and (grun_layers is None or grun == grun_layers)
    ((_, params),) = sample("grun", opts, n=1)
    assert params["layers"] == grun


def test_tiny_reference_keeps_the_module_defaults():
    """On the 2-layer built-in model the reference is the methods' own defaults (chosen there)."""
    for method in ("rmu", "grun"):
        ref = reference_point(method, SpaceOptions("tiny"))
        hp = METHODS[method].hparams()
        for name, r in ref.items():
            if name in {f.name for f in dataclasses.fields(hp)}:
                assert r.value == getattr(hp, name), (method, name)


@pytest.mark.parametrize("method", sorted(SPACES))
def test_fixed_value_is_returned_and_not_searched(method):
    for trial, params in sample(method, SpaceOptions(fixed={"lr": 1e-3}), n=2):
        assert params["lr"] == 1e-3
        assert "lr" not in trial.params


@pytest.mark.parametrize("method", sorted(SPACES))
def test_override_range_is_respected(method):
    ((trial, _),) = sample(method, SpaceOptions(), n=1)
    numeric = {
        n: d
        for n, d in trial.distributions.items()
        if not isinstance(d, optuna.distributions.CategoricalDistribution)
    }
    ranges = {}
    for name, d in numeric.items():  # the lowest quarter of each default range
        high = d.low + (d.high - d.low) / 4
        ranges[name] = Range(d.low, max(d.low, round(high) if d.step else high), log=d.log)
    for trial, params in sample(method, SpaceOptions(ranges=ranges), seed=1):
        for name, r in ranges.items():
            assert r.low <= params[name] <= r.high, (name, params[name], r)
            assert trial.distributions[name].high == r.high


def test_categorical_fix_and_range_override():
    trial, params = sample("palu", SpaceOptions(fixed={"first_n": 3}), n=1)[0]
    assert params["first_n"] == 3 and "first_n" not in trial.params
    with pytest.raises(UserError, match="first_n is a choice"):
        sample("palu", SpaceOptions(ranges={"first_n": Range(1, 5, integer=True)}), n=1)


def test_rmu_trainable_layers_follow_the_fixed_layer():
    ((_, params),) = sample("rmu", SpaceOptions("llm", fixed={"layer": 7}), n=1)
    assert params["trainable_layers"] == (5, 6, 7)
    METHODS["rmu"].make_hparams(split(params)[1])
    fixed = {"layer": 7, "trainable_layers": [7]}
    ((_, params),) = sample("rmu", SpaceOptions("llm", fixed=fixed), n=1)
    assert params["trainable_layers"] == (7,)


def test_preset_ranges_differ_where_the_model_size_matters():
    """Integer knobs stay valid for the 2-layer built-in model under tiny; llm searches wider."""
    tiny = sample("rmu", SpaceOptions("tiny"), n=1)[0][0].distributions["layer"]
    llm = sample("rmu", SpaceOptions("llm"), n=1)[0][0].distributions["layer"]
    assert (tiny.low, tiny.high) == (0, 1) and llm.high > tiny.high
    for trial, _ in sample("grun", SpaceOptions("tiny"), n=20):
        assert trial.params["rank"] <= 64  # the built-in model's hidden size


def test_tiny_points_fit_the_builtin_model():
    """Layer indices, ranks and top-k sampled under tiny are valid for the built-in architecture
    (what rmu/grun.prepare and PALU's topk check at run time; no model built, to stay fast)."""
    c = TinyModelConfig()
    for _, params in sample("rmu", SpaceOptions("tiny"), n=20):
        hp = METHODS["rmu"].make_hparams(split(params)[1])
        assert all(0 <= i < c.num_hidden_layers for i in (hp.layer, *hp.trainable_layers))
    for _, params in sample("grun", SpaceOptions("tiny"), n=20):
        hp = METHODS["grun"].make_hparams(split(params)[1])
        assert hp.rank <= c.hidden_size and max(hp.layers) < c.num_hidden_layers
    ((trial, _),) = sample("palu", SpaceOptions("tiny"), n=1)
    # the trained tokenizer stays a little under the configured size (1954 of 2048)
    assert trial.distributions["top_k"].high <= c.vocab_size // 2


def test_parse_range_accepts_good_specs():
    assert parse_range("lr=1e-6:1e-4:log") == ("lr", Range(1e-6, 1e-4, log=True))
    assert parse_range("layer=0:3:int") == ("layer", Range(0, 3, integer=True))
    assert parse_range("alpha=0.5:2") == ("alpha", Range(0.5, 2.0))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alpha=2:1", "empty range: low 2.0 > high 1.0"),
        ("lr=0:1e-3:log", "log-scale range needs a positive low bound"),
        ("lr=-1e-3:1e-3:log", "log-scale range needs a positive low bound"),
        ("alpha=0:inf", "bounds must be finite"),
        ("alpha=nan:1", "bounds must be finite"),
        ("alpha=a:b", "bounds must be numbers"),
        ("alpha", "expects NAME=LOW:HIGH"),
        ("=1:2", "expects NAME=LOW:HIGH"),
        ("alpha=1", "expects NAME=LOW:HIGH"),
        ("alpha=1:2:3:4", "expects NAME=LOW:HIGH"),
        ("alpha=1:2:cubic", "expects NAME=LOW:HIGH"),
    ],
)
def test_bad_ranges_are_user_errors(text, message):
    with pytest.raises(UserError, match=message):
        parse_range(text)


def test_bad_range_objects_are_user_errors():
    with pytest.raises(UserError, match="empty range"):
        Range(1.0, 0.5)
    with pytest.raises(UserError, match="positive low bound"):
        Range(0.0, 1.0, log=True)
    with pytest.raises(UserError, match="unknown preset"):
        SpaceOptions("huge")


def test_the_study_is_told_its_objective_keys(tmp_path):
    """optuna-dashboard and optuna.visualization read metric_names (else "Objective 0")."""
    from search_spaces._common import SpaceOptions
    from sweeps import experiment
    from sweeps.objectives import DEFAULTS, get_objectives
    from sweeps.search import make_searcher

    objs = get_objectives(list(DEFAULTS["tofu"]))
    keys, modes = [o.key for o in objs], [o.mode for o in objs]
    storage = experiment.journal(experiment.journal_path(tmp_path, "npo"))
    make_searcher("npo", "tpe", 0, SpaceOptions("tiny"), keys, modes, storage, "npo", None)
    study = experiment.load_study(tmp_path, "npo")
    assert study.metric_names == ["log10_forget_quality", "model_utility"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MAXIMIZE"]


# --- the sweep's side: SweepConfig resolves depth, family and batch, and runs the reference ---


def _config_only_model(path, n_layers: int) -> str:
    """A model folder holding only its config: enough for the depth (no weights are read)."""
    from transformers import LlamaConfig

    LlamaConfig(num_hidden_layers=n_layers, hidden_size=64, num_attention_heads=4).save_pretrained(
        path
    )
    return str(path)


def test_sweep_reads_the_depth_and_evaluates_the_scaled_reference_first(tmp_path):
    from sweeps.config import SweepConfig, make_job
    from unlearn_core.source import Source

    tiny = SweepConfig(method="rmu")
    assert (tiny.n_layers, tiny.batch_size, tiny.grad_accum) == (2, 8, 4)
    assert tiny.defaults_point()["layer"] == 1 and "schedule" not in tiny.defaults_point()
    # the schedule is held at the reference's, not searched (no Optuna dimension for it)
    assert tiny.space_options().fixed["schedule"] == "linear"
    trial = optuna.create_study().ask()
    assert SPACES["rmu"](trial, tiny.space_options())["schedule"] == "linear"
    assert "schedule" not in trial.distributions
    model = _config_only_model(tmp_path / "m16", 16)
    rmu = SweepConfig(method="rmu", source=Source("tiny-tofu-small", model=model))
    point = rmu.defaults_point()
    assert rmu.n_layers == 16 and rmu.resolved_preset() == "llm"
    assert (point["layer"], point["trainable_layers"], point["alpha"]) == (4, (2, 3, 4), 1200.0)
    # what the first trial runs: the space on the enqueued point (the schedule comes fixed)
    job = make_job(rmu, SPACES["rmu"](optuna.trial.FixedTrial(point), rmu.space_options()), 0)
    assert (job.train.lr, job.train.schedule, job.train.warmup_epochs) == (5e-5, "constant", 0.0)
    assert job.hparams["layer"] == 4
    # MUSE's setting on a real model: constant LR, no warmup or decay, 4 x 8
    muse = SweepConfig(method="npo", source=Source("tiny-muse-small", model=model))
    job = make_job(
        muse, SPACES["npo"](optuna.trial.FixedTrial(muse.defaults_point()), muse.space_options()), 0
    )
    assert (job.train.schedule, job.train.warmup_epochs, job.train.weight_decay) == (
        "constant",
        0.0,
        0.0,
    )
    assert (job.train.batch_size, job.train.grad_accum) == (4, 8)
    # what the user gives wins: batch, depth
    given = SweepConfig(method="rmu", batch_size=2, grad_accum=16, n_layers=4)
    assert (given.batch_size, given.grad_accum, given.n_layers) == (2, 16, 4)


def test_sweep_schedule_and_step_accounting_reach_every_trial():
    from sweeps.config import SweepConfig, make_job
    from sweeps.preflight import check_values

    accounting = "open-unlearning"
    cfg = SweepConfig(method="npo", fixed={"schedule": "constant"}, step_accounting=accounting)
    point = cfg.defaults_point()
    assert "schedule" not in point  # fixed values are not part of the enqueued point
    ((_, params),) = sample("npo", cfg.space_options(), n=1)
    job = make_job(cfg, params, 0)
    assert (job.train.schedule, job.train.step_accounting) == ("constant", "open-unlearning")
    # a row from before the schedule was searched runs TrainConfig's defaults
    old = {k: v for k, v in params.items() if k != "schedule"}
    assert make_job(SweepConfig(method="npo"), old, 0).train.schedule == "linear"
    with pytest.raises(UserError, match="unknown schedule 'steep'"):
        check_values(SweepConfig(method="npo", fixed={"schedule": "steep"}))
    with pytest.raises(UserError, match="unknown step_accounting 'hf'; accepted: unlearn-sweep"):
        SweepConfig(method="npo", step_accounting="hf")


def test_unreadable_model_depth_is_one_line_naming_the_flag(tmp_path):
    from sweeps.config import SweepConfig
    from unlearn_core.source import Source

    (tmp_path / "m").mkdir()  # an architecture transformers does not know
    (tmp_path / "m" / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(UserError, match="cannot read the number of layers of .*give --n-layers"):
        SweepConfig(method="rmu", source=Source("tiny-tofu-small", model=str(tmp_path / "m")))
    with pytest.raises(UserError, match="n_layers must be >= 1"):
        SweepConfig(method="rmu", n_layers=0)


def test_the_grid_sampler_runs_the_space_with_its_schedule():
    """The classic grid holds every searched parameter (GridSampler refuses one it lacks)."""
    from sweeps.config import SweepConfig
    from sweeps.search import make_sampler

    cfg = SweepConfig(method="npo")
    sampler = make_sampler("grid", 0, "npo", "tiny", cfg.defaults_point())
    study = optuna.create_study(sampler=sampler)
    params = SPACES["npo"](study.ask(), cfg.space_options())
    assert params["schedule"] == "linear" and params["lr"] in (5e-4, 1e-3, 2e-3)


@pytest.mark.parametrize("method", sorted(SPACES))
def test_a_sweep_holds_the_optimiser_knobs_and_gamma_unless_asked(method):
    """Lean default spaces (issue 17): schedule, warmup and weight decay at the method's
    reference, and for a loss gamma * forget + alpha * retain gamma too (only the ratio matters
    under Adam); a --space range or a --fix value searches or sets them instead."""
    from search_spaces import RATIO_HELD, held
    from sweeps.config import SweepConfig

    cfg = SweepConfig(method=method)
    ref = {k: r.value for k, r in cfg.reference().items()}
    trial = optuna.create_study().ask()
    params = SPACES[method](trial, cfg.space_options())
    for name in held(method):
        assert name not in trial.distributions and params[name] == ref[name], name
    assert ("gamma" in held(method)) == (method in RATIO_HELD)
    if method in RATIO_HELD:
        assert "alpha" in trial.distributions  # alpha / gamma, searched as alpha
    asked = SweepConfig(
        method=method, space={"warmup_epochs": "0:0.5"}, fixed={"weight_decay": 0.0}
    )
    trial = optuna.create_study().ask()
    params = SPACES[method](trial, asked.space_options())
    assert trial.distributions["warmup_epochs"].high == 0.5 and params["weight_decay"] == 0.0


def test_start_up_and_population_scale_with_the_budget():
    """TPE's and GP's random start-up and NSGA-II's population follow the budget (Optuna's 10
    start-up trials and population of 50 made small budgets random search), counted in study
    trials: one per evaluated epoch."""
    from sweeps.config import SweepConfig
    from sweeps.search import budget_of, make_sampler

    cfg = SweepConfig(method="npo")
    small, large = (budget_of("npo", cfg.space_options(), n, 1) for n in (9, 100))
    assert small.dims == 4 and small.points_per_trial == 4.5  # epochs 1..8, each evaluated
    assert small.startup_configs() == 2 and large.startup_configs() == 10
    assert small.startup_points() == round(3 * 4.5)
    assert budget_of("npo", cfg.space_options(), 9, 2).points_per_trial == 2.5  # ceil(E / 2)
    tpe = make_sampler("tpe", 0, "npo", "tiny", budget=small)
    assert tpe._n_startup_trials == 14
    assert make_sampler("gp", 0, "npo", "tiny", budget=small)._n_startup_trials == 14
    nsga = make_sampler(
        "nsga2", 0, "npo", "tiny", budget=budget_of("npo", cfg.space_options(), 32, 1)
    )
    assert nsga._population_size == 8 < 32
