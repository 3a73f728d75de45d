"""An exported job's open-unlearning counterpart: the Hydra overrides of its `src/train.py` and the
same settings as an experiment YAML. Names and defaults are open-unlearning's at commit d3d7cf9
(configs/trainer/*.yaml, configs/experiment/unlearn/{tofu,muse}/*.yaml, community/methods)."""

from __future__ import annotations

import dataclasses
import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import yaml

from unlearn_core.data.documents import TRAINING
from unlearn_core.data.tofu import split_configs
from unlearn_core.errors import UserError

# (value, all hparams, optimizer steps per epoch or None) -> open-unlearning method_args
Translate = Callable[[object, dict, int | None], dict]


@dataclass(frozen=True)
class Unmapped:
    """An hparam open-unlearning cannot set; `why` goes into the output as a comment."""

    why: str


@dataclass(frozen=True)
class Trainer:
    handler: str  # configs/trainer/<handler>.yaml
    # our hparam -> its method_args name (same value), a Translate, or Unmapped
    hparams: dict[str, str | Translate | Unmapped]
    fixed: dict = field(default_factory=dict)  # method_args our method always has
    experiment: str = "default"  # configs/experiment/unlearn/<family>/<experiment>.yaml
    data: Callable[[dict], dict] | None = None  # extra data overrides from the job
    note: str = ""  # a known difference, printed as a comment


@dataclass(frozen=True)
class Family:
    """open-unlearning's experiment folder for a benchmark, and its split settings."""

    folder: str  # configs/experiment/<folder>/
    splits: Callable[[str], dict]  # our split -> the experiment's top-level split keys
    builtin: bool = False  # unlearn-sweep's own generated data set


def _retain_loss(value, hp: dict, spe: int | None) -> dict:
    # open-unlearning's GradDiff knows NLL and KL only; "none" is the same loss as NLL at alpha 0
    if value == "none":
        return {"retain_loss_type": "NLL", "alpha": 0.0}
    return {"retain_loss_type": str(value).upper()}


def _module_regex(layer, hp: dict, spe: int | None) -> dict:
    # Llama-style module names (model.layers.N), as RMU.yaml spells them
    return {"module_regex": rf"model\.layers\.{layer}"}


def _trainable_regex(layers, hp: dict, spe: int | None) -> dict:
    # our prepare() trains only these layers' mlp.down_proj.weight (RMU's class default form)
    pick = "|".join(str(i) for i in layers)
    return {"trainable_params_regex": [rf"model\.layers\.({pick})\.mlp\.down_proj\.weight"]}


def _dual_warmup(steps, hp: dict, spe: int | None) -> dict:
    # open-unlearning enables the dual update at the end of the first epoch e with
    # e >= dual_warmup_epochs, i.e. after whole epochs: ceil(steps / steps per epoch), exact when
    # the warmup is a whole number of our epochs (65 steps = 5 epochs of forget10 at batch 32)
    if spe is None:
        raise UserError(
            "pdu: dual_warmup_steps becomes open-unlearning's dual_warmup_epochs by the sweep's "
            "optimizer steps per epoch, which this export does not record; export it again"
        )
    return {"dual_warmup_epochs": math.ceil(int(steps) / max(spe, 1))}


def _altpo_data(job: dict) -> dict:
    """community/methods/AltPO/run.sh: DPO on the JSON file its generate.py writes."""
    model = PurePosixPath(job["source"]["model"] or "tofu_Llama-3.2-1B-Instruct_full").name
    d = "data.forget.TOFU_QA_forget"
    path = f"community/methods/AltPO/data/{model}/{job['source']['split']}/alt5_seed_0.json"
    return {
        f"{d}.handler": "QAwithAlternateDataset",
        f"{d}.args.hf_args.path": "json",
        f"{d}.args.hf_args.name": None,  # run.sh deletes it; None loads the same
        f"{d}.args.hf_args.split": "train",
        f"{d}.args.hf_args.data_files": path,
        f"{d}.args.alternate_key": "alternate",
        f"{d}.args.return_original": True,
    }


def _same(*names: str) -> dict:
    """Hparams open-unlearning names as we do."""
    return {n: n for n in names}


def _weighted(*names: str) -> dict:
    """Hparams of a GradDiff child: `names` as they are, plus gamma, alpha and the retain loss."""
    return _same(*names, "gamma", "alpha") | {"retain_loss": _retain_loss}


TRAINERS: dict[str, Trainer] = {
    "grad_ascent": Trainer("GradAscent", {}),
    "grad_diff": Trainer("GradDiff", _weighted()),
    "npo": Trainer("NPO", _weighted("beta")),
    "simnpo": Trainer("SimNPO", _weighted("beta", "delta")),
    "idk_dpo": Trainer("DPO", _weighted("beta"), experiment="idk"),
    # AltPO is open-unlearning's DPO on alternates its generate.py samples (community/methods/
    # AltPO): the same loss and data shape (5 alternates per question, one row each), so it maps;
    # the sampled alternates differ, as they do between two of our seeds
    "altpo": Trainer(
        "DPO",
        _weighted("beta"),
        data=_altpo_data,
        note="alternates: run community/methods/AltPO/generate.py for this model and split first"
        " (its prompts and samples, not unlearn-sweep's; no near-copy filter)",
    ),
    "rmu": Trainer(
        "RMU",
        _same("steering_coeff", "alpha", "gamma")
        | {
            "layer": _module_regex,
            "trainable_layers": _trainable_regex,
            "seed": Unmapped("u is drawn from the global RNG that trainer.args.seed seeds"),
        },
        fixed={"retain_loss_type": "EMBED_DIFF"},
    ),
    "undial": Trainer(
        "UNDIAL",
        _weighted("beta"),
        note="open-unlearning's UNDIAL also distils prompt and padding positions",
    ),
    "ceu": Trainer("CEU", _same("ignore_first_n_answer_tokens")),
    "satimp": Trainer("SatImp", _weighted("beta1", "beta2")),
    "wga": Trainer("WGA", _weighted("beta")),
    "pdu": Trainer(
        "PDU",
        _same("gamma", "alpha", "dual_step_size", "retain_loss_eps")
        | {"dual_warmup_steps": _dual_warmup},
        fixed={"primal_dual": True, "dual_update_upon": "step"},  # lambda moves every micro-batch
        note="dual_warmup_epochs = ceil(dual_warmup_steps / optimizer steps per epoch)",
    ),
}


def _tofu(split: str) -> dict:
    c = split_configs(split)
    return {"forget_split": c["forget"], "retain_split": c["retain"], "holdout_split": c["holdout"]}


def _muse(data_split: str) -> Callable[[str], dict]:
    (_, forget), ((_, retain),) = TRAINING["muse"]  # raw/forget and raw/retain1, as here
    return lambda split: {"data_split": data_split, "forget_split": forget, "retain_split": retain}


# benchmark -> open-unlearning experiment (none has DUSK at d3d7cf9: those are refused)
FAMILIES: dict[str, Family] = {
    "tofu": Family("unlearn/tofu", _tofu),
    "muse-news": Family("unlearn/muse", _muse("News")),
    "muse-books": Family("unlearn/muse", _muse("Books")),
    "tiny-tofu": Family("unlearn/tofu", _tofu, builtin=True),
    "tiny-tofu-small": Family("unlearn/tofu", _tofu, builtin=True),
    "tiny-muse": Family("unlearn/muse", _muse("News"), builtin=True),
    "tiny-muse-small": Family("unlearn/muse", _muse("News"), builtin=True),
}

# top-level and trainer.args keys each experiment already has (others are added with ++)
_ARGS = ("learning_rate", "num_train_epochs", "weight_decay", "seed", "optim", "save_strategy")
_BASE = {f"trainer.args.{k}" for k in _ARGS} | {
    "trainer.args.per_device_train_batch_size",
    "trainer.args.gradient_accumulation_steps",
    "model.model_args.pretrained_model_name_or_path",
    "task_name",
    "forget_split",
    "retain_split",
}
EXPERIMENT_KEYS: dict[str, set[str]] = {
    "unlearn/tofu/default": _BASE | {"holdout_split", "trainer.args.warmup_epochs"},
    "unlearn/tofu/idk": _BASE | {"trainer.args.warmup_epochs"},
    "unlearn/muse/default": _BASE | {"data_split", "trainer.args.lr_scheduler_type"},
}
SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


@dataclass(frozen=True)
class Run:
    """An open-unlearning run: `python src/train.py experiment=<experiment> trainer=<trainer>`
    with `settings` (dotted config keys -> values), and the comments that go with it."""

    experiment: str
    trainer: str
    settings: dict
    notes: tuple[str, ...]


def _refuse_unless_mapped(job: dict) -> tuple[Trainer, Family]:
    method, source = job["method"], job["source"]
    bench, tail = source["benchmark"], "export without --openunlearning for unlearn-sweep's config"
    if method not in TRAINERS:
        raise UserError(
            f"open-unlearning has no counterpart of {method}; it has: {', '.join(TRAINERS)} "
            f"({tail})"
        )
    if bench not in FAMILIES:
        raise UserError(
            f"open-unlearning has no experiment for benchmark {bench} (it has TOFU and MUSE: "
            f"{', '.join(FAMILIES)}); {tail}"
        )
    if source.get("lora_r", 0) > 0:
        raise UserError(
            f"{method} trained LoRA adapters (lora_r {source['lora_r']}) and open-unlearning "
            f"trains full weights only, so its run would differ; {tail}"
        )
    trainer, family = TRAINERS[method], FAMILIES[bench]
    if f"{family.folder}/{trainer.experiment}" not in EXPERIMENT_KEYS:
        raise UserError(
            f"open-unlearning runs {method} ({trainer.handler}) with "
            f"experiment=unlearn/*/{trainer.experiment}, which it has for TOFU only; {tail}"
        )
    return trainer, family


def method_args(job: dict, steps_per_epoch: int | None) -> tuple[dict, list[str]]:
    """trainer.method_args for the job's hparams, and the hparams it cannot set (as comments)."""
    from unlearn_core.methods import get_method  # torch: only when a run is translated

    trainer = TRAINERS[job["method"]]
    # every field, defaults included: ours differ from open-unlearning's YAML (RMU's layer 1 vs 7)
    values = dataclasses.asdict(get_method(job["method"]).make_hparams(job["hparams"]))
    hp = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    args, funcs, lost = dict(trainer.fixed), {}, []
    for name, value in hp.items():
        how = trainer.hparams.get(name, Unmapped("no open-unlearning counterpart"))
        if isinstance(how, Unmapped):
            lost.append(f"# not representable: {name}={value!r} ({how.why})")
        elif isinstance(how, str):
            args[how] = value
        else:
            funcs[name] = how
    for name, how in funcs.items():  # after the renames: a translation may set a renamed key
        args |= how(hp[name], hp, steps_per_epoch)
    return args, lost


def openunlearning_run(export: dict) -> Run:
    """The open-unlearning run that trains the exported job there, or one line saying why none."""
    job, info = export["job"], export["info"]
    trainer, family = _refuse_unless_mapped(job)
    src, t = job["source"], job["train"]
    experiment = f"{family.folder}/{trainer.experiment}"
    known = EXPERIMENT_KEYS[experiment]
    splits = {k: v for k, v in family.splits(src["split"]).items() if k in known}
    steps, epoch = info.get("optimizer_steps"), info.get("epoch")
    args, lost = method_args(job, steps // epoch if steps and epoch else None)
    settings = splits | {
        "task_name": f"unlearn-sweep_{src['benchmark']}_{src['split']}_{trainer.handler}_"
        f"{info.get('trial') or 'best'}",
        "trainer.args.learning_rate": t["lr"],
        "trainer.args.num_train_epochs": t["epochs"],
        "trainer.args.warmup_epochs": t["warmup_epochs"],
        "trainer.args.lr_scheduler_type": SCHEDULES[t["schedule"]],
        "trainer.args.weight_decay": t["weight_decay"],
        "trainer.args.max_grad_norm": t["max_grad_norm"],
        "trainer.args.optim": "adamw_torch",  # unlearn-sweep's torch AdamW, not paged 32-bit
        "trainer.args.per_device_train_batch_size": t["batch_size"],
        "trainer.args.gradient_accumulation_steps": t["grad_accum"],
        "trainer.args.seed": t["seed"],
    }
    settings |= {f"trainer.method_args.{k}": v for k, v in args.items()}
    settings |= trainer.data(job) if trainer.data else {}
    if src["model"]:
        settings["model.model_args.pretrained_model_name_or_path"] = src["model"]
    notes = [*lost, *_notes(job, trainer, family)]
    if t["stop_after"] is not None:
        settings["trainer.args.save_strategy"] = "epoch"
    return Run(experiment, trainer.handler, settings, tuple(notes))


def _notes(job: dict, trainer: Trainer, family: Family) -> list[str]:
    t, bench = job["train"], job["source"]["benchmark"]
    notes = [f"# {trainer.note}"] if trainer.note else []
    if t["stop_after"] is not None:
        notes.append(
            f"# chosen at epoch {t['stop_after']} of {t['epochs']}: keep that epoch's "
            "checkpoint (the schedule is the full run's)"
        )
    if family.builtin:
        notes.append(
            f"# {bench} is unlearn-sweep's built-in benchmark; on the real one the tiny models' "
            "learning rates do not transfer"
        )
    if t.get("step_accounting", "unlearn-sweep") != "open-unlearning":
        notes.append(
            "# optimizer steps and warmup differ: open-unlearning's HF Trainer takes "
            "epochs*floor(micro_batches/accum) steps and int(warmup_epochs*n/(batch*accum*gpus)) "
            "warmup steps; sweep with --step-accounting open-unlearning for an exact match"
        )
    notes.append("# effective batch = per-device batch x accumulation x GPUs in open-unlearning")
    return notes


def hydra_value(v) -> str:
    """A value as a Hydra override writes it (strings other than plain words double-quoted)."""
    if isinstance(v, bool):
        return str(v).lower()
    if v is None:
        return "null"
    if isinstance(v, list | tuple):
        return "[" + ",".join(hydra_value(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v)
    s = str(v)
    if isinstance(v, str) and not all(c.isalnum() or c in "_-./" for c in s):
        assert '"' not in s, f"no quote in a Hydra string: {s!r}"
        return f'"{s}"'
    return s


def override_args(run: Run) -> list[str]:
    """The overrides, each as one shell word; keys the experiment lacks are added with ++."""
    known = EXPERIMENT_KEYS[run.experiment]
    parts = [f"experiment={run.experiment}", f"trainer={run.trainer}"]
    for key, value in run.settings.items():
        add = "" if key in known or key.startswith("trainer.method_args.") else "++"
        parts.append(f"{add}{key}={hydra_value(value)}")
    return parts


def openunlearning_overrides(export: dict) -> str:
    """The open-unlearning command (Hydra overrides) that trains the same configuration there."""
    run = openunlearning_run(export)
    words = ["python src/train.py --config-name=unlearn.yaml"]
    words += [shlex.quote(a) for a in override_args(run)]
    return "\n".join(run.notes) + "\n" + " \\\n  ".join(words)


def openunlearning_yaml(export: dict) -> str:
    """The same run as an open-unlearning experiment file extending its benchmark's experiment."""
    run = openunlearning_run(export)
    name = export["job"]["method"]
    nested: dict = {}
    for key, value in run.settings.items():
        *parents, last = key.split(".")
        node = nested
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    doc = {"defaults": [f"/experiment/{run.experiment}", {"override /trainer": run.trainer}]}
    head = [
        "# @package _global_",
        f"# unlearn-sweep's {name}: save as configs/experiment/unlearn_sweep/{name}.yaml in "
        "open-unlearning and run",
        f"#   python src/train.py --config-name=unlearn.yaml experiment=unlearn_sweep/{name}",
        *run.notes,
    ]
    return "\n".join(head) + "\n" + yaml.safe_dump(doc | nested, sort_keys=False)
