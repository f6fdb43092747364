"""Secrets written in config/maintenance.yml never become resource configuration (stored with runs, shown in the UI)."""

import dagster as dg
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster_shared.serdes import serialize_value

from trading_maintenance.defs.health.ops import check_system_health, system_health_check_job
from trading_maintenance.resources import SettingsBoundResource, build_resources
from trading_maintenance.settings import load_settings
from trading_maintenance_tests.conftest import write_config

BROKER_SECRET = "brokersecret-0123456789abcdef"
SMTP_PASSWORD = "smtp-pass-4242"
SLACK = "https://hooks.slack.com/services/T000SECRET/B000SECRET/slacksecretpath1234"
SERVICE_PASSWORD = "svc-pw-7777"


def _settings(tmp_path, data_dir, redis_url, monkeypatch):
    for var in ("REDIS_URL", "DATABASE_URL", "ALPACA_API_KEY", "ALPACA_SECRET_KEY", "SLACK_WEBHOOK_URL", "ALERT_WEBHOOK_URL", "SMTP_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    config = write_config(
        tmp_path,
        data_dir,
        redis={"url": redis_url},
        broker={"api_key": "PK0123456789ABCDEFGH", "secret_key": BROKER_SECRET},
        notifications={"slack_webhook_url": SLACK, "smtp_password": SMTP_PASSWORD},
        services=[{"name": "scheduler", "url": f"http://ops:{SERVICE_PASSWORD}@127.0.0.1:1/health"}],
    )
    return load_settings(config, environ={})


def test_definitions_with_config_file_secrets_show_no_secret(tmp_path, data_dir, redis_url, monkeypatch):
    settings = _settings(tmp_path, data_dir, redis_url, monkeypatch)
    resources = build_resources(settings)
    bound = {key: r.secret_keys for key, r in resources.items() if isinstance(r, SettingsBoundResource)}
    assert bound == {
        "broker": ["broker.api_key", "broker.secret_key"],
        "alerts": ["notifications.slack_webhook_url", "notifications.smtp_password"],
        "platform_services": ["services.0.url"],
    }
    defs = dg.Definitions(assets=[check_system_health], jobs=[system_health_check_job], resources=resources)
    # What the webserver serves (resource details, configured values) comes from this snapshot.
    snapshot = serialize_value(RepositorySnap.from_def(defs.get_repository_def()))
    assert "notifications.smtp_password" in snapshot and str(settings.config_path) in snapshot
    for secret in (BROKER_SECRET, SMTP_PASSWORD, SLACK, "slacksecretpath1234", SERVICE_PASSWORD):
        assert secret not in snapshot


def test_a_settings_bound_resource_is_the_real_resource_at_run_time(tmp_path, data_dir, redis_url, monkeypatch):
    settings = _settings(tmp_path, data_dir, redis_url, monkeypatch)
    defs = dg.Definitions(assets=[check_system_health], jobs=[system_health_check_job], resources=build_resources(settings))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("system_health_check_job").execute_in_process(
            instance=instance, run_config={"ops": {"check_system_health": {"config": {"send_alerts": False}}}}
        )
        assert result.success
        output = result.output_for_node("check_system_health")
        run_config = str(instance.get_run_by_id(result.run_id).run_config)
    assert [s["name"] for s in output["services"]] == ["scheduler"]
    assert SERVICE_PASSWORD not in str(output) and SERVICE_PASSWORD not in run_config


def test_environment_secrets_stay_environment_variables(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("ALPACA_SECRET_KEY", BROKER_SECRET)
    monkeypatch.setenv("ALPACA_API_KEY", "PK0123456789ABCDEFGH")
    settings = load_settings(write_config(tmp_path, data_dir))
    broker = build_resources(settings)["broker"]
    assert isinstance(broker.secret_key, dg.EnvVar) and broker.secret_key.env_var_name == "ALPACA_SECRET_KEY"
