"""A two-node Ray cluster on loopback for tests/test_cluster.py, in a process of its own (Ray's
settings are read once per process, and the test process's Ray must stay as it was): a head node
with no CPU for trials and a worker node with 2. It prints the address as one JSON line, then
reads commands: `replace` kills the worker node (no graceful stop: a lost machine) and adds a
fresh one; `version V` makes the cluster say it runs Ray V (the metadata every `ray.init` checks,
as a cluster started with another Ray holds); end of input shuts the cluster down. Loopback and
a token come from the environment the test gives it (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0,
RAY_AUTH_MODE, RAY_AUTH_TOKEN)."""

from __future__ import annotations

import json
import sys

import ray._common.usage.usage_constants as usage_constants
import ray._private.ray_constants as ray_constants
from ray._common.usage.usage_lib import get_cluster_metadata
from ray.cluster_utils import Cluster

NODE = {"node_ip_address": "127.0.0.1", "object_store_memory": 100 * 2**20}


def main() -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, **NODE})
    worker = cluster.add_node(num_cpus=2, **NODE)
    print(json.dumps({"address": cluster.address}), flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "replace":
                cluster.remove_node(worker, allow_graceful=False)
                worker = cluster.add_node(num_cpus=2, **NODE)
                print(json.dumps({"replaced": True}), flush=True)
            elif line.startswith("version "):
                gcs = cluster.head_node.get_gcs_client()
                metadata = get_cluster_metadata(gcs) | {"ray_version": line.split()[1]}
                gcs.internal_kv_put(
                    usage_constants.CLUSTER_METADATA_KEY,
                    json.dumps(metadata).encode(),
                    overwrite=True,
                    namespace=ray_constants.KV_NAMESPACE_CLUSTER,
                )
                print(json.dumps(metadata), flush=True)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
