"""The result row, in sections, and its one owner: what a trial reports to Ray (`report`) and the
line ResultsLog appends to `<experiment>/results/<method>.jsonl` (`log_row`). No ray import: the
analysis reads rows by these names."""

from __future__ import annotations

# params: the sampled configuration; objectives: objective key -> value; metrics: every evaluation
# metric; run: bookkeeping. A field outside the sections is bookkeeping (it joins `run`), so no
# new field can pass for a metric.
SECTIONS = ("params", "objectives", "metrics", "run")
IDENTITY = ("event", "trial_id", "method")
EVENTS = ("result", "complete", "error", "retry")
# Ray's fields of a result that the log leaves out: the whole config (`params` holds what was
# sampled), the trial id (the row's own), and the machine's addresses
RAY_LEFT_OUT = ("config", "trial_id", "hostname", "node_ip")


def report(
    run: dict, objectives: dict[str, float] | None = None, metrics: dict | None = None
) -> dict:
    """What the trainable passes to `tune.report`: a diverged trial reports only `run`."""
    out = {"objectives": objectives, "metrics": metrics, "run": run}
    return {k: v for k, v in out.items() if v is not None}


# the run field marking a report between evaluations (every N optimizer steps): training
# statistics only, which Ray's own per-trial logs and TensorBoard keep and the searcher, the
# stopper and the results log pass over
BETWEEN = "between_evaluations"


def step_report(run: dict) -> dict:
    """What the trainable passes to `tune.report` every N optimizer steps: `run` only (its step,
    epoch in progress, train_loss, lr, tokens_per_s, peak_memory_gib), marked BETWEEN."""
    return {"run": {BETWEEN: True, **run}}


def is_step_report(result: dict) -> bool:
    """A report between evaluations, as callbacks (nested) or searchers (flat) see it."""
    return bool(result.get("run", {}).get(BETWEEN) or result.get(ray_name("run", BETWEEN)))


def ray_name(section: str, key: str) -> str:
    """The name under which Ray's searcher and schedulers find `key` of a reported section: Ray
    (2.x) flattens a nested result with "/" before they read it (`flatten_dict` in its
    tune_controller); stoppers and callbacks get the result nested."""
    return f"{section}/{key}"


def log_row(
    event: str, trial_id: str, method: str, params: dict | None, result: dict | None = None, **run
) -> dict:
    """A line of the results log. `result`: a trial's report as Ray hands it to callbacks (nested),
    with Ray's own bookkeeping (timestamp, training_iteration, ...) at its top level, which joins
    `run`; `run`: the log's own bookkeeping (time, error)."""
    result = result or {}
    row: dict = {"event": event, "trial_id": trial_id, "method": method}
    if params is not None:
        row["params"] = params
    row |= {s: result[s] for s in ("objectives", "metrics") if s in result}
    own = {**result.get("run", {}), **run}
    ray = {k: v for k, v in result.items() if k not in (*SECTIONS, *RAY_LEFT_OUT, *own)}
    row["run"] = own | ray
    return row
