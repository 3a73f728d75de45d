"""The private Ray cluster a sweep starts when no --address is given: every process listens on
loopback only, and the control plane wants a token that only this driver's processes hold.
A cluster joined with --address keeps whatever its owner configured (README, "Security")."""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets

# Ray's GCS, raylet, agents and workers listen on every interface unless the node's address is
# loopback; a plain `ray.init()` on Linux always picks the address the machine routes outward
# with (even given _node_ip_address="127.0.0.1", which it "resolves" to that address). Ray's
# single-machine mode (the default on macOS and Windows) picks 127.0.0.1 instead, and then every
# gRPC and HTTP server binds to it. Ray reads the switch when it is imported, so the processes it
# starts get it from the environment and this process, which imported Ray already, gets it set.
SINGLE_MACHINE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def private_cluster_settings() -> None:
    """Before `ray.init()` of a new local cluster: loopback only, and token authentication (other
    users of this machine reach loopback too). Ray turns tokens on by default for a new local
    cluster unless RAY_AUTH_MODE says otherwise, so a `disabled` inherited from the shell is
    dropped; the token is random, in this process's environment (Ray's processes inherit it, one
    per process: Ray caches it), never on disk (Ray would write one to ~/.ray/auth_token)."""
    from ray._private import ray_constants

    os.environ[SINGLE_MACHINE] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ.pop("RAY_AUTH_MODE", None)
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    # Ray's notice that it turned tokens on suggests turning them off: not for this cluster
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
        logging.ERROR
    )


def check_loopback() -> None:
    """After `ray.init()` of the private cluster: its node address must be loopback, or its
    servers listen on the network (a Ray upgrade that drops the switch above)."""
    import ray

    node_ip = ray.util.get_node_ip_address()
    if not ipaddress.ip_address(node_ip).is_loopback:
        ray.shutdown()
        raise AssertionError(
            f"the private Ray cluster took node address {node_ip}, not loopback; "
            f"this Ray version ignores {SINGLE_MACHINE}=0"
        )
