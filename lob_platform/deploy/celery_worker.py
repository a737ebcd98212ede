"""The module Celery workers of the celery profile load (``celery -A lob_platform.deploy.celery_worker
worker``; ``lob deploy worker`` starts one): dagster-celery's step task on the profile's app.

The code location's modules are imported here, in the worker's main process, so each step process
it forks (at start, and to replace one that died) has them already instead of importing them for
its first step."""

from dagster_celery.tasks import create_task

import lob_platform.definitions  # noqa: F401  (imported for the forked step processes)

from lob_platform.deploy.celery import worker_app

app = worker_app()
execute_plan = create_task(app)
