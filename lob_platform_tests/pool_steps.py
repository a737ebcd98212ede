"""A job for the pool test, in a module of its own: the multiprocess executor imports it in every
step's process, so it imports little beyond Dagster and the pools."""

import os
import time
from pathlib import Path

import dagster as dg

from lob_platform.deploy.pools import CPU_POOL, GPU_POOL, GPU_STEP_TAGS

STEP_S = 1.0
MEETING_POINT = "LOB_TEST_MEETING_POINT"
"""A folder where the cpu pool's steps wait for each other: they finish only once both run at once."""


def _training_step(name: str):
    @dg.op(name=name, pool=GPU_POOL, tags=GPU_STEP_TAGS)
    def training_step():
        time.sleep(STEP_S)

    return training_step


def _replay_step(name: str):
    @dg.op(name=name, pool=CPU_POOL)
    def replay_step():
        meeting_point = Path(os.environ[MEETING_POINT])
        (meeting_point / name).touch()
        deadline = time.monotonic() + 120
        while len(list(meeting_point.iterdir())) < len(CPU_STEPS):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: the other cpu steps never ran beside this one")
            time.sleep(0.05)

    return replay_step


GPU_STEPS = [_training_step(f"train_{n}") for n in range(3)]
CPU_STEPS = [_replay_step(f"replay_{n}") for n in range(2)]


@dg.job(executor_def=dg.multiprocess_executor.configured({"max_concurrent": 5}))
def gpu_and_cpu_steps():
    """Three training-like steps in the gpu pool and two in the cpu pool, all ready at once."""
    for step in GPU_STEPS + CPU_STEPS:
        step()
