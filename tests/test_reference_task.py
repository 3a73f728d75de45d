"""The once-per-sweep evaluations (the retain reference, the target's and the retain model's
metrics) run as a Ray task with a trial's resources, so a GPU-less head node never evaluates a
large model on its CPU; the driver alone writes what the task returns (issue 15, item 3)."""

from __future__ import annotations

import json

import pytest

from sweeps import experiment as folder
from sweeps.config import SweepConfig, to_dict
from sweeps.launch import init_ray, model_points, reference_and_target
from unlearn_core.source import Source


@pytest.fixture
def ray_private():
    init_ray(None)
    yield
    import ray

    ray.shutdown()


@pytest.mark.slow  # a private Ray cluster and a Ray task that evaluates two models (make test-slow)
def test_the_task_returns_what_the_driver_writes_and_reuses(tmp_path, ray_private):
    cfg = SweepConfig("npo", Source("tiny-tofu-small", "forget01"), cpus_per_trial=1)
    home = tmp_path / "exp"
    reference, utility = reference_and_target(cfg, home)
    bench = ("tiny-tofu-small", "forget01")
    target = json.loads(folder.model_metrics_path(home, "target", *bench).read_text())
    retain = json.loads(folder.model_metrics_path(home, "retain", *bench).read_text())
    here = model_points(to_dict(cfg))  # the same computation in this process
    # the trials get the content (Ray's object store), the same the folder keeps
    assert reference == json.loads(folder.reference_path(home, *bench).read_text())
    assert reference == json.loads(json.dumps(here["reference"]))
    assert target == pytest.approx(here["target"]) and retain == pytest.approx(here["retain"])
    assert utility == target["model_utility"] and 0 < utility < 1
    assert retain["forget_quality"] == pytest.approx(1.0)  # the retain model is its own reference
    # computed once: a second call reads the files (the task is not run again)
    assert reference_and_target(cfg, home) == (reference, utility)
