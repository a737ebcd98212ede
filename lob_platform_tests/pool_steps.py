"""A job for the pool test, in a module of its own: the multiprocess executor imports it in every
step's process, so it imports little beyond Dagster and the pools."""

import time

import dagster as dg

from lob_platform.deploy.pools import CPU_POOL, GPU_POOL, GPU_STEP_TAGS

STEP_S = 1.0


def _sleep_step(name: str, pool: str, tags: dict):
    @dg.op(name=name, pool=pool, tags=tags)
    def sleep_step():
        time.sleep(STEP_S)

    return sleep_step


GPU_STEPS = [_sleep_step(f"train_{n}", GPU_POOL, GPU_STEP_TAGS) for n in range(3)]
CPU_STEPS = [_sleep_step(f"replay_{n}", CPU_POOL, {}) for n in range(2)]


@dg.job(executor_def=dg.multiprocess_executor.configured({"max_concurrent": 5}))
def gpu_and_cpu_steps():
    """Three training-like steps in the gpu pool and two in the cpu pool, all ready at once."""
    for step in GPU_STEPS + CPU_STEPS:
        step()
