"""Settings: defaults, overrides, and every bad-value path naming its source and key."""

from pathlib import Path

import pytest

from trading_maintenance.settings import SettingsError, load_settings


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "maintenance.yml"
    path.write_text(text)
    return path


def test_repository_config_matches_the_original_design():
    settings = load_settings(environ={})
    retention = settings.maintenance.data_retention
    assert (retention.parquet_files, retention.log_files, retention.temp_files, retention.backup_files) == (90, 30, 1, 7)
    perf = settings.maintenance.performance
    assert (perf.max_file_size_mb, perf.compression_enabled, perf.parallel_processing, perf.max_workers) == (100, True, True, 4)
    sched = settings.maintenance.scheduling
    assert (sched.daily_maintenance_hour, sched.weekly_maintenance_day, sched.emergency_health_threshold) == (2, "sunday", 30)
    alerts = settings.maintenance.alerts
    assert (alerts.cpu, alerts.memory, alerts.disk, alerts.enable_notifications) == (80, 85, 90, True)
    assert settings.tasks.max_concurrent_tasks == 3 and settings.tasks.task_timeout_minutes == 30
    assert settings.data_dir.is_absolute() and settings.data_dir.name == "data"


def test_environment_overrides_yaml(tmp_path):
    env = {
        "REDIS_URL": "redis://:hunter2@10.0.0.5:6380/2",
        "REDIS_MAX_CONNECTIONS": "50",
        "DATABASE_URL": "postgresql://u:pw@db/trading",
        "DATABASE_POOL_SIZE": "9",
        "BACKUP_REMOTE_ENABLED": "true",
        "BACKUP_S3_BUCKET": "bkt",
        "BACKUP_RETENTION_DAYS": "14",
        "ALERT_WEBHOOK_URL": "https://hooks.example/x",
        "ALERT_EMAIL_ENABLED": "yes",
        "ALERT_COOLDOWN_MINUTES": "5",
        "MAX_CONCURRENT_TASKS": "7",
        "TASK_TIMEOUT_MINUTES": "45",
        "ENABLE_COMPRESSION": "off",
        "LOG_LEVEL": "debug",
        "TRADING_DATA_DIR": str(tmp_path / "d"),
    }
    s = load_settings(environ=env)
    assert s.redis_url() == env["REDIS_URL"] and s.redis.max_connections == 50
    assert s.database_url() == env["DATABASE_URL"] and s.database.pool_size == 9
    assert s.backup.remote_enabled is True and s.backup.s3_bucket == "bkt"
    assert s.maintenance.data_retention.backup_files == 14
    assert s.notifications.email_enabled is True and s.notifications.cooldown_minutes == 5
    assert s.tasks.max_concurrent_tasks == 7 and s.tasks.task_timeout_minutes == 45
    assert s.maintenance.performance.compression_enabled is False
    assert s.log_level == "DEBUG" and s.data_dir == tmp_path / "d"


def test_maintenance_config_variable_selects_the_file(tmp_path):
    path = _write(tmp_path, "maintenance:\n  data_retention:\n    log_files: 12\n")
    assert load_settings(environ={"MAINTENANCE_CONFIG": str(path)}).maintenance.data_retention.log_files == 12


@pytest.mark.parametrize(
    "yaml_text, expected",
    [
        ("maintenance:\n  performance:\n    max_workers: lots\n", ["maintenance.performance.max_workers", "valid integer", "'lots'"]),
        ("maintenance:\n  performance:\n    max_workers: 0\n", ["maintenance.performance.max_workers", "greater than or equal to 1"]),
        ("maintenance:\n  alerts:\n    cpu: 150\n", ["maintenance.alerts.cpu", "less than or equal to 100"]),
        ("maintenance:\n  data_retention:\n    log_file: 3\n", ["maintenance.data_retention.log_file", "unknown key"]),
        ("maintenance:\n  scheduling:\n    weekly_maintenance_day: funday\n", ["weekly_maintenance_day", "'funday'"]),
        ("maintenance:\n  scheduling:\n    timezone: Mars/Olympus\n", ["maintenance.scheduling.timezone", "unknown IANA time zone"]),
        ("maintenance:\n  scheduling:\n    partitions_start_date: 2020-13-01\n", ["month must be in 1..12"]),
        ("maintenance:\n  scheduling:\n    partitions_start_date: 'first of may'\n", ["partitions_start_date"]),
        ("maintenance:\n  scheduling:\n    daily_maintenance_hour: 24\n", ["daily_maintenance_hour", "less than or equal to 23"]),
        ("log_level: LOUD\n", ["log_level", "'LOUD'"]),
        ("services:\n  - {name: x, url: 'ftp://h/health'}\n", ["services.0.url", "http://"]),
        ("tasks:\n  max_concurrent_tasks: -1\n", ["tasks.max_concurrent_tasks"]),
        ("notifications:\n  smtp_port: 70000\n", ["notifications.smtp_port"]),
    ],
)
def test_bad_yaml_values_name_file_key_and_expectation(tmp_path, yaml_text, expected):
    path = _write(tmp_path, yaml_text)
    with pytest.raises(SettingsError) as info:
        load_settings(path, environ={})
    message = str(info.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message


@pytest.mark.parametrize(
    "var, value, key",
    [
        ("REDIS_MAX_CONNECTIONS", "many", "redis.max_connections"),
        ("DATABASE_POOL_SIZE", "0", "database.pool_size"),
        ("BACKUP_REMOTE_ENABLED", "perhaps", "backup.remote_enabled"),
        ("ALERT_EMAIL_ENABLED", "2", "notifications.email_enabled"),
        ("ALERT_COOLDOWN_MINUTES", "-5", "notifications.cooldown_minutes"),
        ("MAX_CONCURRENT_TASKS", "three", "tasks.max_concurrent_tasks"),
        ("TASK_TIMEOUT_MINUTES", "0", "tasks.task_timeout_minutes"),
        ("ENABLE_COMPRESSION", "sometimes", "maintenance.performance.compression_enabled"),
        ("BACKUP_RETENTION_DAYS", "x", "maintenance.data_retention.backup_files"),
        ("LOG_LEVEL", "chatty", "log_level"),
    ],
)
def test_bad_environment_values_name_the_variable(var, value, key):
    with pytest.raises(SettingsError) as info:
        load_settings(environ={var: value})
    message = str(info.value)
    assert f"environment variable {var}" in message and key in message


def test_secret_values_are_never_echoed(tmp_path):
    secret = "sk-very-secret-value-123"
    path = _write(tmp_path, f"broker:\n  api_key: [{secret}]\nredis:\n  url: {{bad: {secret}}}\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path, environ={})
    message = str(info.value)
    assert "broker.api_key" in message and "redis.url" in message
    assert secret not in message and "***" in message


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = _write(tmp_path, "maintenance:\n  performance: [unclosed\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path, environ={})
    assert str(path) in str(info.value) and "line" in str(info.value)


def test_top_level_must_be_a_mapping(tmp_path):
    path = _write(tmp_path, "- a\n- b\n")
    with pytest.raises(SettingsError, match="expected a mapping"):
        load_settings(path, environ={})


def test_missing_config_file_named_by_variable(tmp_path):
    with pytest.raises(SettingsError, match="MAINTENANCE_CONFIG.*does not exist"):
        load_settings(environ={"MAINTENANCE_CONFIG": str(tmp_path / "nope.yml")})


# Configuration mistakes that put a secret where a section, a list or a safe value is expected.
SECRET = "PW-sekrit-4711"
MISPLACED_SECRETS = {
    "url_as_section": (f"redis: 'redis://:{SECRET}@10.0.0.5:6379/0'\n", "redis: expected a mapping"),
    "service_url_with_password": (f"services:\n  - {{name: x, url: 'ftp://ops:{SECRET}@h/health'}}\n", "services.0.url: expected an http"),
    "list_for_mapping": (f"notifications: ['https://hooks.slack.com/services/T1/B2/{SECRET}']\n", "notifications: expected a mapping"),
    "mapping_for_list": (f"services: {{x: 'http://ops:{SECRET}@h/health'}}\n", "services: expected a list"),
    "secret_in_a_safe_key": (f"broker:\n  api_key: {SECRET}\n  timeout_seconds: {SECRET}\n", "broker.timeout_seconds"),
}


@pytest.mark.parametrize("shape", sorted(MISPLACED_SECRETS))
def test_misplaced_secret_is_named_not_shown_on_the_cli(tmp_path, shape):
    import os
    import subprocess
    import sys

    text, expected = MISPLACED_SECRETS[shape]
    path = _write(tmp_path, text)
    env = {**os.environ, "MAINTENANCE_CONFIG": str(path), "DAGSTER_HOME": str(tmp_path)}
    cli = Path(sys.executable).with_name("trading-maintenance")
    done = subprocess.run([str(cli), "status"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert expected in done.stderr and str(path) in done.stderr
    assert "Traceback" not in done.stderr
    assert SECRET not in done.stdout + done.stderr


def test_misplaced_secrets_are_named_not_shown_when_dagster_loads_the_definitions(tmp_path):
    import os
    import subprocess
    import sys

    paths = []
    for shape, (text, _) in sorted(MISPLACED_SECRETS.items()):
        (tmp_path / shape).mkdir()
        paths.append(str(_write(tmp_path / shape, text)))
    # The code location's load error, as the webserver and `dagster` commands render it.
    script = (
        "import os, sys\n"
        "from dagster._utils.error import serializable_error_info_from_exc_info\n"
        "from trading_maintenance import settings\n"
        "for path in sys.argv[1:]:\n"
        "    os.environ['MAINTENANCE_CONFIG'] = path\n"
        "    settings.get_settings.cache_clear()\n"
        "    sys.modules.pop('trading_maintenance.definitions', None)\n"
        "    try:\n"
        "        import trading_maintenance.definitions\n"
        "        print('LOADED')\n"
        "    except Exception:\n"
        "        print(serializable_error_info_from_exc_info(sys.exc_info()).to_string())\n"
        "    print('=====')\n"
    )
    done = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=300, env={**os.environ})
    outputs = done.stdout.split("=====")[:-1]
    assert len(outputs) == len(paths), done.stderr[-2000:]
    for (shape, (_, expected)), output in zip(sorted(MISPLACED_SECRETS.items()), outputs):
        assert "SettingsError" in output and expected in output, shape
        assert SECRET not in output, shape
