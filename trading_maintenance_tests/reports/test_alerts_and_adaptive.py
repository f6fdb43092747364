"""A failing task alerts (local webhook and SMTP), resolves on success; the adaptive sensor acts on a disk trend."""

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRun

from trading_maintenance.core.intelligence import adaptive, trends
from trading_maintenance.defs.alerts.sensors import maintenance_run_failure_sensor, maintenance_run_success_sensor
from trading_maintenance.defs.intelligence import adaptive_sensor
from trading_maintenance.resources import AlertsResource, MaintenanceSettingsResource, RedisResource
from trading_maintenance_tests.foundation.test_alerts import http_sink, smtp_sink  # noqa: F401 - fixtures
from trading_maintenance_tests.reports.conftest import run, store_health

NY = ZoneInfo("America/New_York")


def _status_context(instance, result, sensor, resources):
    run_ = instance.get_run_by_id(result.run_id)
    event = next(e for e in instance.all_logs(result.run_id) if e.dagster_event and e.dagster_event.event_type_value in (
        "PIPELINE_FAILURE", "RUN_FAILURE", "PIPELINE_SUCCESS", "RUN_SUCCESS")).dagster_event
    return dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_event=event, dagster_instance=instance,
                                              dagster_run=run_, resources=resources)


def test_failed_backup_alerts_by_webhook_and_email_then_resolves(instance, http_sink, smtp_sink, data_dir, redis_url, redis_client, config_path):  # noqa: F811
    base, handler = http_sink
    smtp_port, mailbox = smtp_sink
    alerts = AlertsResource(webhook_url=f"{base}/hook", slack_webhook_url=f"{base}/slack", email_enabled=True, smtp_host="127.0.0.1",
                            smtp_port=smtp_port, email_to=["desk@example.com"], data_dir=str(data_dir))
    resources = {"alerts": alerts, "redis": RedisResource(url=redis_url, data_dir=str(data_dir)),
                 "settings": MaintenanceSettingsResource(config_path=str(config_path), data_dir=str(data_dir))}
    failed = run(instance, "backup", fail=True)
    maintenance_run_failure_sensor(_status_context(instance, failed, maintenance_run_failure_sensor, resources).for_run_failure())
    hooks = [body for path, body in handler.received if path == "/hook"]
    assert len(hooks) == 1
    alert = hooks[0]
    assert alert["key"] == "task_failed:backup" and alert["severity"] == "critical"
    assert alert["details"]["run_id"] == failed.run_id
    assert alert["details"]["error"] == "PermissionError: cannot remove /data/temp/x.tmp: permission denied"
    assert alert["details"]["run_url"].endswith(f"/runs/{failed.run_id}")
    assert len(mailbox.messages) == 1 and b"[CRITICAL] backup failed" in mailbox.messages[0].content
    assert [json.loads(a)["key"] for a in redis_client.lrange("maintenance:alerts", 0, -1)] == ["task_failed:backup"]

    ok = run(instance, "backup")
    maintenance_run_success_sensor(_status_context(instance, ok, maintenance_run_success_sensor, resources))
    assert redis_client.llen("maintenance:alerts") == 0
    resolved = [body for path, body in handler.received if path == "/hook" and body["title"].startswith("Resolved:")]
    assert len(resolved) == 1 and resolved[0]["key"] == "task_failed:backup"


def test_warning_goes_to_slack_and_webhook_not_email(instance, http_sink, smtp_sink, data_dir, redis_url, config_path):  # noqa: F811
    base, handler = http_sink
    smtp_port, mailbox = smtp_sink
    alerts = AlertsResource(webhook_url=f"{base}/hook", slack_webhook_url=f"{base}/slack", email_enabled=True, smtp_host="127.0.0.1",
                            smtp_port=smtp_port, email_to=["desk@example.com"], data_dir=str(data_dir))
    resources = {"alerts": alerts, "redis": RedisResource(url=redis_url, data_dir=str(data_dir)),
                 "settings": MaintenanceSettingsResource(config_path=str(config_path), data_dir=str(data_dir))}
    failed = run(instance, "log_rotation", fail=True)
    maintenance_run_failure_sensor(_status_context(instance, failed, maintenance_run_failure_sensor, resources).for_run_failure())
    assert sorted(path for path, _ in handler.received) == ["/hook", "/slack"]
    assert mailbox.messages == []


def _sensor_context(instance, redis_url, data_dir, cursor=None):
    return dg.build_sensor_context(instance=instance, cursor=cursor, resources={"redis": RedisResource(url=redis_url, data_dir=str(data_dir))})


def test_adaptive_sensor_launches_data_cleanup_for_a_disk_trend_once(instance, redis_url, data_dir, monkeypatch):
    now = datetime(2026, 11, 28, 10, 0, tzinfo=NY).timestamp()  # a Saturday: market closed
    monkeypatch.setattr(adaptive_sensor, "current_time", lambda: now)
    for i in range(24):  # +1 point an hour, 93 % now: full in about 7 hours
        store_health(instance, now - (23 - i) * 3600, disk_percent=70.0 + i, health_score=90.0)
    result = adaptive_sensor.adaptive_maintenance_sensor(_sensor_context(instance, redis_url, data_dir))
    assert [r.job_name for r in result.run_requests] == ["data_cleanup_job"]
    request = result.run_requests[0]
    assert "full in" in request.tags["maintenance/reason"] and int(request.tags["dagster/priority"]) > 0
    again = adaptive_sensor.adaptive_maintenance_sensor(_sensor_context(instance, redis_url, data_dir, result.cursor))
    assert not again.run_requests and "cooling down" in again.skip_reason.skip_message


def test_adaptive_sensor_starts_no_heavy_job_in_market_hours_and_orders_priorities(instance, redis_url, data_dir, monkeypatch):
    now = datetime(2026, 11, 24, 11, 0, tzinfo=NY).timestamp()  # a Tuesday, NYSE open
    monkeypatch.setattr(adaptive_sensor, "current_time", lambda: now)
    instance.add_run(DagsterRun(job_name="backup_archive_job", run_id="f" * 36, status=dg.DagsterRunStatus.FAILURE,
                                tags={"maintenance/task": "backup"}))
    result = adaptive_sensor.adaptive_maintenance_sensor(_sensor_context(instance, redis_url, data_dir))
    assert not result.run_requests
    assert "NYSE is open" in result.skip_reason.skip_message

    findings = [adaptive.disk_finding(trends.linear_trend("disk_percent", [(h * 3600.0, 70.0 + h) for h in range(24)]))]
    assert findings[0].task == "data_cleanup"
    assert adaptive.priority("data_cleanup", findings, market_open=False) > adaptive.priority("backup", findings, market_open=False)
    assert adaptive.priority("backup", [], market_open=True) < adaptive.priority("backup", [], market_open=False)


def test_success_resolves_alerts_of_earlier_runs_of_the_task_only(instance, http_sink, data_dir, redis_url, redis_client, config_path):  # noqa: F811
    from trading_maintenance.core.common.alerts import Alert

    base, handler = http_sink
    alerts = AlertsResource(webhook_url=f"{base}/hook", data_dir=str(data_dir))
    resources = {"alerts": alerts, "redis": RedisResource(url=redis_url, data_dir=str(data_dir)),
                 "settings": MaintenanceSettingsResource(config_path=str(config_path), data_dir=str(data_dir))}
    earlier = Alert(key="backup:failed", severity="critical", title="Backup failed", message="disk full", details={"task": "backup"})
    other = Alert(key="reconciliation:critical", severity="critical", title="Mismatch", message="AAPL", details={"task": "portfolio_reconciliation"})
    alerts.send(earlier, redis_client)
    alerts.send(other, redis_client)
    ok = run(instance, "backup")
    # Raised while the successful run went on (its start is before this alert): not cleared by that success.
    started = instance.get_run_record_by_id(ok.run_id).start_time
    during = Alert(key="backup:drill_failed", severity="critical", title="Drill failed", message="x", details={"task": "backup"},
                   created_at=datetime.fromtimestamp(started + 0.5, NY).isoformat())
    alerts.send(during, redis_client)

    maintenance_run_success_sensor(_status_context(instance, ok, maintenance_run_success_sensor, resources))
    active = sorted(json.loads(a)["key"] for a in redis_client.lrange("maintenance:alerts", 0, -1))
    assert active == ["backup:drill_failed", "reconciliation:critical"]
    resolved = [body["key"] for path, body in handler.received if body["title"].startswith("Resolved:")]
    assert resolved == ["backup:failed"]


def test_a_suppressed_alert_refreshes_its_active_entry(data_dir, redis_client):
    from datetime import timedelta, timezone

    from trading_maintenance.core.common.alerts import Alert

    alerts = AlertsResource(data_dir=str(data_dir), cooldown_minutes=30)
    first = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
    alerts.send(Alert(key="health:disk", severity="warning", title="disk is yellow", message="disk 86%",
                      created_at=first.isoformat()), redis_client, now=first)
    later = first + timedelta(minutes=5)
    dispatch = alerts.send(Alert(key="health:disk", severity="critical", title="disk is red", message="disk 97%",
                                 created_at=later.isoformat()), redis_client, now=later)
    assert not dispatch.sent and dispatch.suppressed_until == (first + timedelta(minutes=30)).isoformat()
    active = [json.loads(a) for a in redis_client.lrange("maintenance:alerts", 0, -1)]
    assert [(a["key"], a["severity"], a["message"], a["created_at"]) for a in active] == \
        [("health:disk", "critical", "disk 97%", later.isoformat())]


def test_alerts_sent_when_a_task_concludes_name_the_task_and_its_next_success_resolves_them(
        instance, data_dir, redis_url, redis_client, config_path):
    from trading_maintenance.core.common.alerts import Alert
    from trading_maintenance.defs.common import conclude

    alerts = AlertsResource(data_dir=str(data_dir))
    resources = {"alerts": alerts, "redis": RedisResource(url=redis_url, data_dir=str(data_dir)),
                 "settings": MaintenanceSettingsResource(config_path=str(config_path), data_dir=str(data_dir))}

    @dg.op
    def ends_with_an_alert(context) -> None:
        conclude(context, redis_client, "portfolio_reconciliation", {"status": "warning", "run_id": context.run_id}, alerts=alerts,
                 alert=Alert(key="reconciliation:critical", severity="critical", title="Mismatch", message="AAPL differs"))

    @dg.job(name="portfolio_reconciliation_job", tags={"maintenance/task": "portfolio_reconciliation"})
    def reconciliation_like():
        ends_with_an_alert()

    assert reconciliation_like.execute_in_process(instance=instance).success
    [entry] = [json.loads(a) for a in redis_client.lrange("maintenance:alerts", 0, -1)]
    assert entry["key"] == "reconciliation:critical" and entry["details"]["task"] == "portfolio_reconciliation"
    ok = run(instance, "portfolio_reconciliation")
    maintenance_run_success_sensor(_status_context(instance, ok, maintenance_run_success_sensor, resources))
    assert redis_client.llen("maintenance:alerts") == 0
