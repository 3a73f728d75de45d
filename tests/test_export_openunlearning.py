"""`export --openunlearning`: every method of the registry, on TOFU (forget01/05/10), MUSE (News,
Books), DUSK and built-in benchmarks, either becomes open-unlearning overrides whose experiment,
split settings and trainer.method_args keys are open-unlearning's own, or is refused in one line;
RMU's regexes select what our RMU trains, PDU's warm-up becomes epochs, the experiment YAML holds
the same settings as the overrides, LoRA is refused, and the CLI writes the YAML (or, refused,
nothing). open-unlearning's names below are copied as facts from its repository at d3d7cf9; the
test reads no copy of it."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml
from fixtures_analysis.fake import write_experiment

from analysis.openunlearning import (
    hydra_value,
    openunlearning_overrides,
    openunlearning_run,
    openunlearning_yaml,
)
from unlearn_core.benchmarks import BENCHMARKS
from unlearn_core.errors import UserError
from unlearn_core.job import JobConfig, job_to_dict
from unlearn_core.methods import METHODS
from unlearn_core.source import Source
from unlearn_sweep.cli import main

# method_args keys of each trainer, from locuslab/open-unlearning configs/trainer/<handler>.yaml
# (GradAscent.yaml has none; DPO.yaml, NPO.yaml ... inherit GradDiff.yaml's and list them again)
OU_METHOD_ARGS = {
    "GradAscent": set(),  # configs/trainer/GradAscent.yaml
    "GradDiff": {"gamma", "alpha", "retain_loss_type"},  # configs/trainer/GradDiff.yaml
    "NPO": {"beta", "alpha", "gamma", "retain_loss_type"},  # configs/trainer/NPO.yaml
    "SimNPO": {
        "delta",
        "beta",
        "alpha",
        "gamma",
        "retain_loss_type",
    },  # configs/trainer/SimNPO.yaml
    "DPO": {"beta", "alpha", "gamma", "retain_loss_type"},  # configs/trainer/DPO.yaml
    "RMU": {  # configs/trainer/RMU.yaml
        "gamma",
        "steering_coeff",
        "retain_loss_type",
        "alpha",
        "module_regex",
        "trainable_params_regex",
    },
    "UNDIAL": {"gamma", "alpha", "beta", "retain_loss_type"},  # configs/trainer/UNDIAL.yaml
    "CEU": {"ignore_first_n_answer_tokens"},  # configs/trainer/CEU.yaml
    "SatImp": {
        "beta1",
        "beta2",
        "alpha",
        "gamma",
        "retain_loss_type",
    },  # configs/trainer/SatImp.yaml
    "WGA": {"beta", "alpha", "gamma", "retain_loss_type"},  # configs/trainer/WGA.yaml
    "PDU": {  # configs/trainer/PDU.yaml
        "retain_loss_eps",
        "primal_dual",
        "dual_step_size",
        "dual_update_upon",
        "dual_warmup_epochs",
        "gamma",
        "alpha",
        "loss_names",
    },
}
# retain_loss_type values: src/trainer/unlearn/grad_diff.py (NLL, KL), rmu.py adds EMBED_DIFF
OU_RETAIN_LOSSES = {"NLL", "KL", "EMBED_DIFF"}
# top-level split keys of configs/experiment/unlearn/tofu/{default,idk}.yaml, muse/default.yaml
OU_SPLIT_KEYS = {
    "unlearn/tofu/default": {"forget_split", "retain_split", "holdout_split"},
    "unlearn/tofu/idk": {"forget_split", "retain_split"},
    "unlearn/muse/default": {"data_split", "forget_split", "retain_split"},
}
# our method -> open-unlearning trainer (AltPO: community/methods/AltPO/run.sh runs DPO)
HANDLERS = {
    "grad_ascent": "GradAscent",
    "grad_diff": "GradDiff",
    "npo": "NPO",
    "simnpo": "SimNPO",
    "idk_dpo": "DPO",
    "altpo": "DPO",
    "rmu": "RMU",
    "undial": "UNDIAL",
    "ceu": "CEU",
    "satimp": "SatImp",
    "wga": "WGA",
    "pdu": "PDU",
}
# no trainer in src/trainer/unlearn/ at d3d7cf9 (IdkNLL has hub checkpoints, no trainer)
NOT_IN_OU = {
    "idk_nll",
    "sga",
    "task_vector",
    "tau",
    "me_gd",
    "idk_ap",
    "palu",
    "grun",
    "dual_optim",
}
# hparams with no open-unlearning setting, said in a comment (RMU draws u from the global RNG)
UNREPRESENTABLE = {"rmu": {"seed"}}

TOFU = {f"forget{p:02d}": (f"retain{100 - p}", f"holdout{p:02d}") for p in (1, 5, 10)}
CASES = [
    *(("tofu", s) for s in TOFU),
    ("muse-news", "forget"),
    ("muse-books", "forget"),
    ("dusk", "forget"),
    ("tiny-tofu-small", "forget05"),
    ("tiny-muse-small", "forget"),
    ("tiny-dusk-small", "forget"),
]
MODEL = {"tofu": "open-unlearning/tofu_Llama-3.2-1B-Instruct_full"}


def export_doc(method: str, benchmark: str, split: str, hparams=None, **source) -> dict:
    """What `export` writes for a trial of the method's defaults: 10 epochs of 13 optimizer steps
    (TOFU forget10 at 8 x 4)."""
    src = Source(benchmark=benchmark, split=split, model=MODEL.get(benchmark), **source)
    job = JobConfig(method, hparams=hparams or {}, source=src)
    return {"job": job_to_dict(job), "info": {"trial": "t0", "epoch": 10, "optimizer_steps": 130}}


def words(text: str) -> tuple[list[str], list[str]]:
    """(comment lines, the command's shell words) of printed overrides."""
    lines = text.splitlines()
    comments = [line for line in lines if line.startswith("#")]
    command = "\n".join(line for line in lines if not line.startswith("#"))
    return comments, shlex.split(command.replace(" \\\n", " "))


def settings(text: str) -> dict[str, str]:
    """key -> value as printed (++ dropped) of the override words after the program."""
    _, ws = words(text)
    assert ws[:3] == ["python", "src/train.py", "--config-name=unlearn.yaml"], ws[:3]
    return dict(w.removeprefix("++").split("=", 1) for w in ws[3:])


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


def test_every_method_is_mapped_or_refused():
    assert set(METHODS) == set(HANDLERS) | NOT_IN_OU and not set(HANDLERS) & NOT_IN_OU


@pytest.mark.parametrize("benchmark, split", CASES)
@pytest.mark.parametrize("method", list(METHODS))
def test_method_on_benchmark_maps_or_refuses_in_one_line(method, benchmark, split):
    try:
        doc = export_doc(method, benchmark, split)
    except UserError:  # e.g. a QA method on documents: no sweep of it exists to export
        return
    family = BENCHMARKS[benchmark].family
    if method in NOT_IN_OU or family == "dusk":
        with pytest.raises(UserError) as e:
            openunlearning_overrides(doc)
        msg = one_line(e)
        assert (method in msg and "it has: grad_ascent" in msg) or "benchmark" in msg
        assert method in NOT_IN_OU or "dusk" in msg
        return
    handler = HANDLERS[method]
    text = openunlearning_overrides(doc)
    got = settings(text)
    experiment = got.pop("experiment")
    assert got.pop("trainer") == handler
    family_dir = {"tofu": "unlearn/tofu", "muse": "unlearn/muse"}[family]
    assert experiment == f"{family_dir}/{'idk' if method == 'idk_dpo' else 'default'}"
    args = {k.removeprefix("trainer.method_args."): v for k, v in got.items() if "method_args" in k}
    assert set(args) <= OU_METHOD_ARGS[handler], set(args) - OU_METHOD_ARGS[handler]
    assert args.get("retain_loss_type", "NLL") in OU_RETAIN_LOSSES
    splits = {k: v for k, v in got.items() if k.endswith("_split")}
    assert set(splits) == OU_SPLIT_KEYS[experiment]
    if family == "tofu":
        retain, holdout = TOFU[split]
        assert (splits["forget_split"], splits["retain_split"]) == (split, retain)
        assert splits.get("holdout_split", holdout) == holdout
    else:
        data = "Books" if benchmark == "muse-books" else "News"
        assert splits == {"data_split": data, "forget_split": "forget", "retain_split": "retain1"}
    comments, _ = words(text)
    lost = {c.split(": ", 1)[1].split("=")[0] for c in comments if "not representable" in c}
    assert lost == UNREPRESENTABLE.get(method, set())  # every other hparam is translated
    assert any("built-in benchmark" in c for c in comments) == BENCHMARKS[benchmark].builtin
    assert "Traceback" not in text


def test_rmu_regexes_select_what_our_rmu_trains():
    doc = export_doc("rmu", "tofu", "forget10", {"layer": 7, "trainable_layers": [5, 6, 7]})
    args = openunlearning_run(doc).settings
    module = args["trainer.method_args.module_regex"]
    (params,) = args["trainer.method_args.trainable_params_regex"]
    assert module == r"model\.layers\.7" and args["trainer.method_args.steering_coeff"] == 6.5
    assert args["trainer.method_args.retain_loss_type"] == "EMBED_DIFF"
    assert params == r"model\.layers\.(5|6|7)\.mlp\.down_proj\.weight"  # WMDP's own form
    # open-unlearning matches with re.fullmatch against named_modules / named_parameters
    assert re.fullmatch(module, "model.layers.7") and not re.fullmatch(module, "model.layers.17")
    trained = [f"model.layers.{i}.mlp.down_proj.weight" for i in (5, 6, 7)]
    frozen = ["model.layers.4.mlp.down_proj.weight", "model.layers.6.mlp.up_proj.weight"]
    assert all(re.fullmatch(params, n) for n in trained)
    assert not any(re.fullmatch(params, n) for n in frozen)
    got = settings(openunlearning_overrides(doc))
    assert got["trainer.method_args.module_regex"] == r'"model\.layers\.7"'  # a Hydra string
    assert got["trainer.method_args.trainable_params_regex"] == f'["{params}"]'


@pytest.mark.parametrize("steps, epochs", [(65, 5), (60, 5), (13, 1), (0, 0)])
def test_pdu_warmup_steps_become_whole_epochs(steps, epochs):
    got = settings(
        openunlearning_overrides(
            export_doc("pdu", "tofu", "forget10", {"dual_warmup_steps": steps})
        )
    )
    assert got["trainer.method_args.dual_warmup_epochs"] == str(epochs)  # 13 steps per epoch
    assert got["trainer.method_args.primal_dual"] == "true"
    assert got["trainer.method_args.dual_update_upon"] == "step"
    assert not any("warmup_steps" in k for k in got)


def test_pdu_without_recorded_steps_is_refused_in_one_line():
    doc = export_doc("pdu", "tofu", "forget10")
    del doc["info"]["optimizer_steps"]
    with pytest.raises(UserError, match="dual_warmup_epochs") as e:
        openunlearning_overrides(doc)
    one_line(e)


@pytest.mark.parametrize(
    "retain_loss, expected",
    [("nll", ("NLL", "1.0")), ("kl", ("KL", "1.0")), ("none", ("NLL", "0.0"))],
)
def test_retain_loss_names_and_none_as_zero_weight(retain_loss, expected):
    doc = export_doc("npo", "tofu", "forget01", {"retain_loss": retain_loss})
    got = settings(openunlearning_overrides(doc))
    assert (
        got["trainer.method_args.retain_loss_type"],
        got["trainer.method_args.alpha"],
    ) == expected


def test_lora_is_refused_in_one_line():
    with pytest.raises(UserError, match="LoRA") as e:
        openunlearning_overrides(export_doc("npo", "tofu", "forget10", lora_r=8))
    assert "npo" in one_line(e)


def test_step_accounting_note_only_when_the_loops_differ():
    doc = export_doc("grad_diff", "tofu", "forget10")
    note = "--step-accounting open-unlearning"
    assert note in openunlearning_overrides(doc)
    doc["job"]["train"]["step_accounting"] = "open-unlearning"
    assert note not in openunlearning_overrides(doc)


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


@pytest.mark.parametrize(
    "method, benchmark, split",
    [("rmu", "tofu", "forget05"), ("altpo", "tofu", "forget10"), ("pdu", "muse-books", "forget")],
)
def test_yaml_holds_the_same_values_as_the_overrides(method, benchmark, split):
    doc = export_doc(method, benchmark, split)
    run = openunlearning_run(doc)
    loaded = yaml.safe_load(openunlearning_yaml(doc))
    assert loaded.pop("defaults") == [
        f"/experiment/{run.experiment}",
        {"override /trainer": run.trainer},
    ]
    flat = _flat(loaded)
    assert flat == run.settings
    printed = settings(openunlearning_overrides(doc))
    assert printed.pop("experiment") == run.experiment and printed.pop("trainer") == run.trainer
    assert printed == {k: hydra_value(v) for k, v in flat.items()}


def test_cli_writes_the_experiment_yaml_beside_the_export(tmp_path, capsys):
    home = write_experiment(tmp_path / "exp", methods=("rmu",), trials=3)
    assert main(["export", str(home), "--rule", "knee", "--openunlearning"]) == 0
    out = capsys.readouterr().out
    path = home / "best" / "rmu.openunlearning.yaml"
    assert str(path) in out and "trainer=RMU" in out
    doc = yaml.safe_load(path.read_text())
    assert doc["trainer"]["method_args"]["module_regex"].startswith(r"model\.layers\.")


def test_cli_refuses_a_method_open_unlearning_lacks_and_writes_nothing(tmp_path, capsys):
    home = write_experiment(tmp_path / "exp", methods=("me_gd",), trials=3)
    assert main(["export", str(home), "--rule", "knee", "--openunlearning"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "me_gd" in err
    assert not (home / "best").exists()
