"""The k8s profile: the Job and pod specs that dagster-k8s's own functions render for every
training step and for a CPU step from the steps' tags and ``deploy/k8s``, the executor
configuration against the executor's schema, and the Helm values. No cluster is involved."""

import json

import dagster as dg
import pytest
import yaml
from dagster._config import validate_config
from dagster_k8s import k8s_job_executor

from lob_platform.core.tables import MESSAGES, SNAPSHOTS
from lob_platform.defs import build_definitions
from lob_platform.defs.models import model_key
from lob_platform.deploy.k8s import (HELM_VALUES, asset_steps, executor_config, k8s_executor, load_profile,
                                     render_step_job, render_training_jobs, training_steps)
from lob_platform.deploy.pools import CPU_POOL, GPU_STEP_TAGS
from lob_platform.lineage import TRAINED_MODELS
from lob_platform.models.specs import EVENT_FAMILIES, FAMILIES
from lob_platform.sources.registry import load_venues

GPU_RESOURCES = GPU_STEP_TAGS["dagster-k8s/config"]["container_config"]["resources"]


@pytest.fixture(scope="module")
def venues(tmp_path_factory):
    """The venues of an empty data root (the built-in ones), with every model family's assets."""
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("k8s")
        (root / "data").mkdir()
        patch.setenv("LOB_DATA_DIR", str(root / "data"))
        patch.setenv("LOB_WAREHOUSE_DIR", str(root / "warehouse"))
        patch.delenv("LOB_MODEL_FAMILIES", raising=False)  # every family gets its assets
        yield load_venues()


@pytest.fixture(scope="module")
def defs(venues):
    return build_definitions(venues)


@pytest.fixture(scope="module")
def profile():
    return load_profile()


@pytest.fixture(scope="module")
def values():
    return yaml.safe_load(HELM_VALUES.read_text())


def pod(step_job):
    return step_job.job.spec.template.spec


def env_of(container) -> dict[str, str | None]:
    return {variable.name: variable.value for variable in container.env}


def test_training_steps_are_found_for_every_model_family(defs, venues):
    keys = {key for step in training_steps(defs) for key in step.asset_keys}
    books = [venue for venue in venues if venue.kind is MESSAGES and venue.has_book]
    panels = [venue for venue in venues if venue.kind is SNAPSHOTS]
    assert books and panels
    for venue in books:
        for family in FAMILIES + EVENT_FAMILIES:
            assert model_key(venue, family, TRAINED_MODELS) in keys, (venue.name, family)
    for venue in panels:
        trained = {key.path[1] for key in keys if key.path[0] == venue.name}
        assert "ssm_hippo" in trained and any(name.startswith("transformer_") for name in trained), trained


def test_every_training_pod_requests_a_gpu_node_and_its_memory(defs, profile, values):
    steps = training_steps(defs)
    assert steps
    deployment = values["dagster-user-deployments"]["deployments"][0]
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    for step in steps:
        rendered = render_step_job(step.key, step.tags, profile)
        spec = pod(rendered)
        [container] = spec.containers
        requests, limits = container.resources.requests, container.resources.limits
        assert requests["nvidia.com/gpu"] == limits["nvidia.com/gpu"] == "1", step.key
        assert requests["memory"] == GPU_RESOURCES["requests"]["memory"], step.key
        assert limits["memory"] == GPU_RESOURCES["limits"]["memory"], step.key
        assert requests["cpu"] == GPU_RESOURCES["requests"]["cpu"], step.key
        assert spec.node_selector == {"nvidia.com/gpu.present": "true"}, step.key
        assert [(t.key, t.operator, t.effect) for t in spec.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]
        assert container.image == image
        assert container.args[-2:] == ["api", "execute_step"]
        env = env_of(container)
        assert env["DAGSTER_RUN_STEP_KEY"] == step.key
        assert env["LOB_PROFILE"] == "k8s"
        for variable in deployment["env"]:
            assert env[variable["name"]] == variable["value"]
        password = next(variable for variable in container.env if variable.name == "DAGSTER_PG_PASSWORD")
        assert password.value_from.secret_key_ref.name == values["global"]["postgresqlSecretName"]
        assert "lob-postgres" in [source.secret_ref.name for source in container.env_from if source.secret_ref]
        assert [(mount.name, mount.mount_path) for mount in container.volume_mounts] == [("lob-storage", "/lob")]
        assert [volume.persistent_volume_claim.claim_name for volume in spec.volumes] == ["lob-storage"]
        assert rendered.namespace == executor_config()["job_namespace"]
        assert rendered.job.metadata.labels["dagster/op"] == step.key


def test_a_cpu_step_gets_the_executor_defaults_and_no_gpu(defs, profile):
    [features] = [step for step in asset_steps(defs) if step.key == "lobster_features"]
    assert features.pool == CPU_POOL
    spec = pod(render_step_job(features.key, features.tags, profile))
    [container] = spec.containers
    defaults = executor_config()["step_k8s_config"]["container_config"]["resources"]
    assert container.resources.requests == defaults["requests"]
    assert container.resources.limits == defaults["limits"]
    assert not spec.node_selector and not spec.tolerations
    assert env_of(container)["LOB_DATA_DIR"] == "/lob/data"


def test_rendered_manifests_serialise_with_their_namespace(defs, profile):
    manifests = render_training_jobs(defs, profile)
    assert set(manifests) == {step.key for step in training_steps(defs)}
    for manifest in json.loads(json.dumps(manifests)).values():
        assert manifest["kind"] == "Job" and manifest["metadata"]["namespace"] == "lob"
        assert manifest["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_executor_yaml_passes_the_k8s_job_executor_schema():
    schema = k8s_job_executor.config_schema.config_type
    config = executor_config()
    assert validate_config(schema, config).success
    assert not validate_config(schema, {**config, "job_namspace": "lob"}).success  # the schema does refuse

    @dg.asset
    def one() -> int:
        return 1

    job = dg.Definitions(assets=[one], executor=k8s_executor()).resolve_implicit_global_asset_job_def()
    assert dg.validate_run_config(job)["execution"]["k8s"]["job_namespace"] == config["job_namespace"]


def test_helm_values_declare_the_code_location_launcher_postgres_and_pools(values):
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert values["dagster-user-deployments"]["enabled"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "lob_platform.definitions"]
    assert {"name": "LOB_PROFILE", "value": "k8s"} in deployment["env"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"]
    [mount] = deployment["volumeMounts"]
    env = {variable["name"]: variable["value"] for variable in deployment["env"]}
    assert env["LOB_DATA_DIR"].startswith(mount["mountPath"] + "/")
    assert env["LOB_WAREHOUSE_DIR"].startswith(mount["mountPath"] + "/")
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] and "postgresqlPassword" not in values["postgresql"]
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"]
    assert values["concurrency"]["enabled"] and values["concurrency"]["pools"]["granularity"] == "op"
