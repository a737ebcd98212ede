"""The k8s profile: Dagster's Helm chart with ``deploy/k8s/values.yaml`` runs the webserver, the
daemon, PostgreSQL and this project as a user-code deployment; the K8sRunLauncher starts each run
in a pod, and dagster-k8s's k8s job executor, configured by ``deploy/k8s/executor.yaml``, starts
each step in a Kubernetes Job of its own.

``render_step_job`` builds the Job that executor creates for a step, with dagster-k8s's own
functions called as its ``K8sStepHandler`` calls them (``_get_container_context``, then
``launch_step``), from the step's op tags and the profile's two files. Nothing here talks to a
cluster: what a running deployment would supply comes from the files instead (the code server's
image and container context from the user deployment, the run launcher's DAGSTER_HOME, instance
ConfigMap and PostgreSQL password Secret from the chart's values), so the specs can be checked on
any machine (``lob_platform_tests/test_deploy_k8s.py``) and read before a deployment
(``render_training_jobs``).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
import kubernetes
import yaml
from dagster._config import process_config
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.types import ExecuteStepArgs
from dagster_k8s import k8s_job_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job,
                             get_k8s_job_name, get_user_defined_k8s_config)

from lob_platform.deploy.pools import GPU_POOL
from lob_platform.deploy.profiles import CODE_LOCATION, DEPLOY_DIR
from lob_platform.errors import ConfigError

K8S_DIR = DEPLOY_DIR / "k8s"
EXECUTOR_CONFIG = K8S_DIR / "executor.yaml"
HELM_VALUES = K8S_DIR / "values.yaml"
RELEASE = "dagster"
"""The Helm release the README installs; the chart names its objects after it."""
USER_DEPLOYMENTS_NAME = f"{RELEASE}-dagster-user-deployments"
"""The prefix of the user-code subchart's objects: the release's name and the subchart's."""
IMAGE_PYTHON = "/usr/local/bin/python"
"""The interpreter of the project's image (``deploy/k8s/Dockerfile``), which the code server reports."""
RENDER_RUN_ID = "00000000-0000-0000-0000-000000000000"
"""The run id of rendered Jobs: a real run's id goes into its steps' Job names and labels."""
ASSET_JOB = "__ASSET_JOB"
"""The job that materializes assets picked in the UI or by sensors and schedules."""


def executor_config() -> dict[str, Any]:
    """The k8s job executor's configuration: ``deploy/k8s/executor.yaml`` as written."""
    return yaml.safe_load(EXECUTOR_CONFIG.read_text())


def k8s_executor() -> dg.ExecutorDefinition:
    """dagster-k8s's k8s job executor with the profile's configuration: the code location's
    executor under ``LOB_PROFILE=k8s``."""
    return k8s_job_executor.configured(executor_config())


@dataclass(frozen=True)
class K8sProfile:
    """The k8s profile's two files, parsed."""

    executor: Mapping[str, Any]
    """The k8s job executor's configuration with its schema's defaults, as a run resolves it."""
    values: Mapping[str, Any]
    """The Helm chart's values."""

    @property
    def deployment(self) -> Mapping[str, Any]:
        """The user deployment of this project."""
        deployments = self.values["dagster-user-deployments"]["deployments"]
        if len(deployments) != 1:
            raise ConfigError(f"{HELM_VALUES} should declare one user deployment (this project); it declares {len(deployments)}.")
        return deployments[0]

    @property
    def image(self) -> str:
        """The user deployment's image, which its code server reports and every run and step runs."""
        image = self.deployment["image"]
        return f"{image['repository']}:{image['tag']}"

    def job_origin(self, job_name: str) -> JobPythonOrigin:
        """Where a run of ``job_name`` comes from, as the code server describes it: the image, the
        module and the container context the chart gives the server."""
        return JobPythonOrigin(job_name, RepositoryPythonOrigin(
            executable_path=IMAGE_PYTHON,
            code_pointer=ModuleCodePointer(CODE_LOCATION, "defs", None),
            container_image=self.image,
            container_context=code_location_container_context(self.deployment),
        ))

    def job_config(self) -> DagsterK8sJobConfig:
        """What ``K8sContainerContext.get_k8s_job_config`` takes from the executor (the image, unset
        here: the code server's is used) and from the run launcher the chart configures."""
        return DagsterK8sJobConfig(
            job_image=self.executor.get("job_image"),
            dagster_home=self.values["global"]["dagsterHome"],
            instance_config_map=f"{RELEASE}-instance",
            postgres_password_secret=self.values["global"]["postgresqlSecretName"],
        )


def load_profile() -> K8sProfile:
    """The profile as the files in ``deploy/k8s`` define it; a configuration the executor would
    refuse stops here with the schema's errors."""
    processed = process_config(k8s_job_executor.config_schema.config_type, executor_config())
    if not processed.success:
        raise ConfigError(f"{EXECUTOR_CONFIG} is not a valid k8s job executor configuration: "
                          + "; ".join(error.message for error in processed.errors))
    return K8sProfile(executor=processed.value, values=yaml.safe_load(HELM_VALUES.read_text()))


def code_location_container_context(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """The container context the chart gives a user deployment's code server (its
    ``dagsterUserDeployments.k8sContainerContext`` helper, with ``includeConfigInLaunchedRuns``):
    runs and steps of the code location inherit it. The namespace and service account the helper
    also sets are left out: the executor's ``job_namespace`` replaces the one, and the other only
    matters to pods that call the Kubernetes API (run workers, not steps)."""
    env = deployment.get("env", [])
    return {"k8s": {
        "image_pull_policy": deployment["image"]["pullPolicy"],
        "env_config_maps": [f"{USER_DEPLOYMENTS_NAME}-{deployment['name']}-user-env",
                            *(config_map["name"] for config_map in deployment.get("envConfigMaps", []))],
        "env_secrets": [secret["name"] for secret in deployment.get("envSecrets", [])],
        "env": env if isinstance(env, list) else [],  # a mapping goes into the -user-env ConfigMap instead
        "volume_mounts": deployment.get("volumeMounts", []),
        "volumes": deployment.get("volumes", []),
        "labels": deployment.get("labels", {}),
        "resources": deployment.get("resources", {}),
    }}


def executor_container_context(executor: Mapping[str, Any]) -> K8sContainerContext:
    """The container context ``k8s_job_executor`` builds from its configuration."""
    return K8sContainerContext(
        image_pull_policy=executor.get("image_pull_policy"),
        image_pull_secrets=executor.get("image_pull_secrets"),
        service_account_name=executor.get("service_account_name"),
        env_config_maps=executor.get("env_config_maps"),
        env_secrets=executor.get("env_secrets"),
        env_vars=executor.get("env_vars"),
        volume_mounts=executor.get("volume_mounts"),
        volumes=executor.get("volumes"),
        labels=executor.get("labels"),
        namespace=executor.get("job_namespace"),
        resources=executor.get("resources"),
        scheduler_name=executor.get("scheduler_name"),
        security_context=executor.get("security_context"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(executor.get("step_k8s_config", {})),
    )


@dataclass(frozen=True)
class StepJob:
    """The Kubernetes Job of one step and the namespace the executor creates it in."""

    namespace: str
    job: kubernetes.client.V1Job

    def manifest(self) -> dict[str, Any]:
        """The Job as a manifest (``kubectl apply -f`` reads it)."""
        manifest = kubernetes.client.ApiClient().sanitize_for_serialization(self.job)
        manifest["metadata"]["namespace"] = self.namespace
        return manifest


def render_step_job(step_key: str, op_tags: Mapping[str, str], profile: K8sProfile,
                    job_name: str = ASSET_JOB, run_id: str = RENDER_RUN_ID) -> StepJob:
    """The Job the k8s job executor creates for step ``step_key`` (an op with tags ``op_tags``,
    string values as Dagster keeps them) in run ``run_id`` of ``job_name``: the run's container
    context (the code location's; with ``values.yaml`` the chart's run launcher would add only its
    service account), merged with the executor's, the step's ``dagster-k8s/config`` tag and the
    executor's ``per_step_k8s_config`` for the op, in that order; then the Job from them."""
    origin = profile.job_origin(job_name)
    run = DagsterRun(job_name=job_name, run_id=run_id, job_code_origin=origin)
    context = (K8sContainerContext.create_for_run(run, None, include_run_tags=False)
               .merge(executor_container_context(profile.executor))
               .merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(op_tags)))
               .merge(K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
                   profile.executor["per_step_k8s_config"].get(step_key, {})))))
    job_config = profile.job_config()
    if not job_config.job_image:
        job_config = job_config.with_image(origin.repository_origin.container_image)
    step_args = ExecuteStepArgs(job_origin=origin, run_id=run_id, step_keys_to_execute=[step_key])
    kubernetes_name = f"dagster-step-{get_k8s_job_name(run_id, step_key)}"
    job = construct_dagster_k8s_job(
        job_config=job_config,
        args=step_args.get_command_args(skip_serialized_namedtuple=True),
        job_name=kubernetes_name,
        pod_name=kubernetes_name,
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": job_name, "dagster/op": step_key, "dagster/run-id": run_id},
        env_vars=[*step_args.get_command_env(), {"name": "DAGSTER_RUN_JOB_NAME", "value": job_name},
                  {"name": "DAGSTER_RUN_STEP_KEY", "value": step_key}],
    )
    return StepJob(namespace=context.namespace, job=job)


@dataclass(frozen=True)
class AssetStep:
    """One step of an asset job: an op and the assets it materializes."""

    key: str
    """The step key, which is the op's name."""
    pool: str | None
    tags: Mapping[str, str]
    asset_keys: tuple[dg.AssetKey, ...]


def asset_steps(defs: dg.Definitions) -> list[AssetStep]:
    """Every step that materializes assets of ``defs``."""
    return [AssetStep(key=asset.node_def.name, pool=asset.node_def.pool, tags=asset.node_def.tags,
                      asset_keys=tuple(asset.keys))
            for asset in defs.resolve_asset_graph().assets_defs
            if asset.is_executable and isinstance(asset.node_def, dg.OpDefinition)]


def training_steps(defs: dg.Definitions) -> list[AssetStep]:
    """The steps of the ``gpu`` pool: every training step."""
    return [step for step in asset_steps(defs) if step.pool == GPU_POOL]


def render_training_jobs(defs: dg.Definitions, profile: K8sProfile | None = None) -> dict[str, dict[str, Any]]:
    """Each training step's Job manifest under the profile, by step key."""
    profile = profile or load_profile()
    return {step.key: render_step_job(step.key, step.tags, profile).manifest() for step in training_steps(defs)}
