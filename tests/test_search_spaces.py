"""Search spaces: one per registered method, every sampled point builds the method's Hparams and a
TrainConfig, Optuna records what the space returns (and a FixedTrial replays it), and --fix,
--space overrides and both presets behave; bad ranges are user errors; the study is told its
metric names."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from search_spaces import SPACES
from search_spaces._common import (
    OPTIMIZER_KEYS,
    PRESETS,
    Range,
    SpaceOptions,
    default_point,
    parse_range,
)
from unlearn_core.builtin import TinyModelConfig
from unlearn_core.errors import UserError
from unlearn_core.methods import METHODS
from unlearn_core.train import TrainConfig

# values a space computes from sampled ones instead of sampling them
DERIVED = {"rmu": {"trainable_layers"}}
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


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("method", sorted(SPACES))
def test_reference_defaults_lie_inside_the_space(method, preset):
    """A sweep evaluates the Hparams defaults and default_point first: they must be in range."""
    defaults = default_point(preset) | dataclasses.asdict(METHODS[method].hparams())
    ((trial, _),) = sample(method, SpaceOptions(preset), n=1)
    for name, dist in trial.distributions.items():
        value = defaults[name]
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            assert value in dist.choices, (name, value)
        else:
            assert dist.low <= value <= dist.high, (name, value, dist)


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
