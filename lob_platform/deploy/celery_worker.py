"""The module Celery workers of the celery profile load (``celery -A lob_platform.deploy.celery_worker
worker``; ``lob deploy worker`` starts one): dagster-celery's step task on the profile's app."""

from dagster_celery.tasks import create_task

from lob_platform.deploy.celery import worker_app

app = worker_app()
execute_plan = create_task(app)
