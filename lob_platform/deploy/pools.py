"""Concurrency pools: how many steps of a kind run at once across every run of an instance.

- ``gpu``: every training step. One at a time per machine: two trainings on one GPU (or on the
  CPU's cores, where there is none) only slow each other down and may run out of memory.
- ``cpu``: the CPU-heavy ingest steps (validation's book replays, the features). As many at once
  as the machine has cores.

Dagster keeps pool limits as instance state (its ``dagster instance concurrency set`` command),
not in ``dagster.yaml``; every profile's ``dagster.yaml`` sets op granularity and a default limit
of one, and ``apply_pools`` gives these two pools their limits on an instance where they have none
yet (a limit set by hand, in the UI or with the command, is kept).
"""

import os

import dagster as dg

GPU_POOL = "gpu"
CPU_POOL = "cpu"

GPU_STEP_TAGS = {"dagster-k8s/config": {
    "container_config": {"resources": {"requests": {"nvidia.com/gpu": "1", "cpu": "4", "memory": "16Gi"},
                                       "limits": {"nvidia.com/gpu": "1", "memory": "32Gi"}}},
    "pod_spec_config": {"node_selector": {"nvidia.com/gpu.present": "true"},
                        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
}}
"""Tags of every training step: on Kubernetes (the k8s job executor, ``deploy/k8s``) the step's pod
requests one GPU, is placed on a GPU node (the label NVIDIA's GPU feature discovery sets) and
tolerates those nodes' taint. Its host memory and cores replace the executor's defaults for
CPU steps: the Mamba TPP at its default size needs about 6 GB of host memory on the CPU path,
the other families less; 16 GiB requested leaves room for the day's rows beside the model, and
the 32 GiB limit stops a runaway step before it takes the node. Four cores: LightGBM, the
forests and logistic regression train on the CPU even in this pool."""


def pool_limits() -> dict[str, int]:
    """The limit of each pool on this machine."""
    return {GPU_POOL: 1, CPU_POOL: os.cpu_count() or 1}


def apply_pools(instance: dg.DagsterInstance) -> dict[str, int]:
    """Give each pool its limit where the instance has none of its own (none, or the default that a
    first step of the pool set); return the limits in force."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}
    limits = pool_limits()
    for pool, info in storage.get_concurrency_infos(list(limits)).items():
        if info.limit is None or info.using_default_limit:
            storage.set_concurrency_slots(pool, limits[pool])
    return {pool: info.slot_count for pool, info in storage.get_concurrency_infos(list(limits)).items()}
