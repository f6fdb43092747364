"""Every deployment file is checked by what reads it, so a typo fails CI: Compose's own schema, systemd's
verifier, Dagster's instance, workspace and K8sRunLauncher config schemas."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trading_maintenance.instance import render_instance_yaml
from trading_maintenance.settings import PROJECT_ROOT
from trading_maintenance_tests.conftest import write_config

DEPLOY = PROJECT_ROOT / "deploy"
PLATFORM_VARIABLES = ("TRADING_DATA_DIR", "REDIS_URL", "DATABASE_URL", "MAINTENANCE_CONFIG", "MAX_CONCURRENT_TASKS", "TASK_TIMEOUT_MINUTES")


def _process_config(config_type, value):
    from dagster._config import process_config

    outcome = process_config(config_type, value)
    assert outcome.success, [error.message for error in outcome.errors]
    return outcome.value


def test_compose_file_passes_the_compose_specification():
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                             str(DEPLOY / "docker-compose.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services_share_the_platform_variables_the_data_volume_and_health_checks():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "code-server", "webserver", "daemon", "api"} <= set(services)
    for name in ("code-server", "webserver", "daemon", "api"):
        service = services[name]
        assert set(PLATFORM_VARIABLES) <= set(service["environment"]), name
        assert "trading-data:/data" in service["volumes"], name
        assert service["healthcheck"]["test"], name
    for name in ("webserver", "daemon"):
        assert "deploy/workspace.yaml" in " ".join(services[name]["command"])
        assert "trading-maintenance init --template deploy/dagster.yaml" in " ".join(services[name]["command"])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    # The units name the install folder /opt/trading-maintenance; point them at this checkout, whose
    # .venv has the same commands, so the verifier can check the executables too.
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        text = unit.read_text().replace("/opt/trading-maintenance/.venv/bin", str(Path(sys.executable).parent))
        text = text.replace("/opt/trading-maintenance", str(PROJECT_ROOT))
        text = text.replace("/etc/trading-maintenance.env", str(DEPLOY / "trading-maintenance.env"))
        (tmp_path / unit.name).write_text(text)
    units = sorted(str(path) for path in tmp_path.glob("*.service"))
    assert len(units) == 3
    result = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_every_unit_reads_the_shared_environment_file_and_renders_the_instance_first():
    for unit in (DEPLOY / "systemd").glob("*.service"):
        text = unit.read_text()
        assert "EnvironmentFile=/etc/trading-maintenance.env" in text, unit.name
        assert "ExecStartPre=/opt/trading-maintenance/.venv/bin/trading-maintenance init --template deploy/dagster.yaml" in text


def test_environment_file_sets_every_variable_the_deploy_files_name():
    defined = {line.split("=", 1)[0] for line in (DEPLOY / "trading-maintenance.env").read_text().splitlines()
               if re.match(r"^[A-Z_]+=", line)}
    named = set(re.findall(r"env: (DAGSTER_[A-Z_]+)", (DEPLOY / "dagster.yaml").read_text() + (DEPLOY / "workspace.yaml").read_text()))
    assert named - {"DAGSTER_PG_PASSWORD"} <= defined
    assert set(PLATFORM_VARIABLES) <= defined


def _render(monkeypatch, tmp_path, **env) -> dict:
    for name in ("DAGSTER_PG_PASSWORD", "DAGSTER_PG_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MAINTENANCE_CONFIG", str(write_config(tmp_path, tmp_path)))
    return yaml.safe_load(render_instance_yaml((DEPLOY / "dagster.yaml").read_text(), DEPLOY / "dagster.yaml"))


def test_production_instance_takes_limits_from_settings_and_needs_no_password(monkeypatch, tmp_path):
    from dagster._core.instance.config import dagster_instance_config_schema

    config = _render(monkeypatch, tmp_path, MAX_CONCURRENT_TASKS="5", TASK_TIMEOUT_MINUTES="2")
    connection = config["storage"]["postgres"]["postgres_db"]
    assert "password" not in connection and "port" not in connection  # trust auth, default port
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 5
    assert config["run_monitoring"]["max_runtime_seconds"] == 120
    for name, value in {"DAGSTER_PG_HOST": "db", "DAGSTER_PG_USER": "dagster", "DAGSTER_PG_DB": "dagster"}.items():
        monkeypatch.setenv(name, value)
    _process_config(dagster_instance_config_schema(), config)

    with_password = _render(monkeypatch, tmp_path, DAGSTER_PG_PASSWORD="s3cret", DAGSTER_PG_PORT="5433")
    assert with_password["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert "s3cret" not in yaml.safe_dump(with_password)


def test_workspace_points_at_the_code_server_from_the_environment(monkeypatch):
    from dagster._core.workspace.config_schema import WORKSPACE_CONFIG_SCHEMA

    monkeypatch.setenv("DAGSTER_CODE_SERVER_HOST", "127.0.0.1")
    monkeypatch.setenv("DAGSTER_CODE_SERVER_PORT", "4000")
    value = _process_config(WORKSPACE_CONFIG_SCHEMA, yaml.safe_load((DEPLOY / "workspace.yaml").read_text()))
    server = value["load_from"][0]["grpc_server"]
    assert (server["host"], server["port"], server["location_name"]) == ("127.0.0.1", 4000, "trading_maintenance")


# The chart turns `runLauncher.config.k8sRunLauncher` into the K8sRunLauncher's instance config with
# these names; a key outside this map is one the chart would not pass on (a typo).
_CHART_TO_LAUNCHER = {
    "envSecrets": ("env_secrets", lambda items: [item["name"] for item in items]),
    "envConfigMaps": ("env_config_maps", lambda items: [item["name"] for item in items]),
    "envVars": ("env_vars", list),
    "volumeMounts": ("volume_mounts", list),
    "volumes": ("volumes", list),
    "resources": ("resources", dict),
    "labels": ("labels", dict),
    "runK8sConfig": ("run_k8s_config", dict),
    "jobNamespace": ("job_namespace", str),
    "imagePullPolicy": ("image_pull_policy", str),
    "failPodOnRunFailure": ("fail_pod_on_run_failure", bool),
}


def test_helm_values_k8s_run_launcher_config_is_accepted_by_dagster_k8s():
    from dagster_k8s import K8sRunLauncher

    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    chart_config = values["runLauncher"]["config"]["k8sRunLauncher"]
    unknown = set(chart_config) - set(_CHART_TO_LAUNCHER)
    assert not unknown, f"keys the chart does not know: {unknown}"
    launcher_config = {_CHART_TO_LAUNCHER[key][0]: _CHART_TO_LAUNCHER[key][1](value) for key, value in chart_config.items()}
    # What the chart itself adds: the instance ConfigMap, DAGSTER_HOME, the PostgreSQL secret.
    launcher_config.update(instance_config_map="trading-maintenance-instance", dagster_home="/opt/dagster/dagster_home",
                           postgres_password_secret="dagster-postgresql-secret", load_incluster_config=True)
    loaded = _process_config(K8sRunLauncher.config_type(), launcher_config)
    assert loaded["resources"]["requests"]["memory"]
    assert {"name": "trading-data", "mountPath": "/data"} in loaded["volume_mounts"]
    claim = next(v for v in loaded["volumes"] if v["name"] == "trading-data")["persistentVolumeClaim"]["claimName"]
    pvc = yaml.safe_load((DEPLOY / "helm" / "data-pvc.yaml").read_text())
    assert claim == pvc["metadata"]["name"] and pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_helm_values_keep_the_same_run_limits_as_the_instance_file():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queued["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    assert [{"key": t["key"], "value": t["value"], "limit": t["limit"]} for t in queued["tagConcurrencyLimits"]] == \
        instance["concurrency"]["runs"]["tag_concurrency_limits"]
    assert values["dagsterDaemon"]["runMonitoring"]["maxRuntimeSeconds"] == instance["run_monitoring"]["max_runtime_seconds"]
    user_code = values["dagster-user-deployments"]["deployments"][0]
    assert user_code["dagsterApiGrpcArgs"] == ["-m", "trading_maintenance.definitions"]


def test_dockerfile_copies_only_files_that_exist_and_no_data():
    text = (DEPLOY / "Dockerfile").read_text()
    sources = [part for line in text.splitlines() if line.startswith("COPY ") for part in line.split()[1:-1]]
    assert sources and all((PROJECT_ROOT / source).exists() for source in sources), sources
    assert not any(source.startswith("data") for source in sources)
    assert "constraints.txt" in text
    assert os.path.getsize(PROJECT_ROOT / "constraints.txt") > 0


def test_an_instance_rendered_from_the_old_template_name_is_rendered_from_the_new_one(tmp_path):
    from trading_maintenance.instance import RENDERED_PREFIX, RENDERED_SUFFIX, rendered_from

    old = tmp_path / "dagster.yaml"
    old.write_text(f"{RENDERED_PREFIX}deploy/dagster.postgres.yaml{RENDERED_SUFFIX}\ntelemetry:\n  enabled: false\n")
    assert rendered_from(old) == DEPLOY / "dagster.yaml"
