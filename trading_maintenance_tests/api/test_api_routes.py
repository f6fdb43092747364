"""Each route against a real instance: runs are submitted to the instance's run queue (seen in run
storage with the job's tags), state is read from Dagster's storage and Redis, errors are JSON."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from trading_maintenance.defs.common import publish_result
from trading_maintenance_tests.api.conftest import make_app


def test_run_is_queued_in_run_storage_with_the_jobs_tags(client, instance):
    answer = client.post("/maintenance/tasks/log_rotation/run")
    assert answer.status_code == 202, answer.text
    run = instance.get_run_by_id(answer.json()["run_id"])
    assert run.status == dg.DagsterRunStatus.QUEUED
    assert run.job_name == "log_rotation_job"
    assert run.tags["maintenance/task"] == "log_rotation"
    assert run.tags["maintenance/trigger"] == "api"
    assert int(run.tags["dagster/max_runtime"]) > 0  # the job's own tag: run monitoring ends it like a scheduled run


def test_dry_run_of_a_partitioned_task_carries_its_partition_and_dry_run_config(client, instance):
    answer = client.post("/maintenance/tasks/trading_data_maintenance/run", json={"dry_run": True, "partition": "2026-01-01"})
    assert answer.status_code == 202, answer.text
    run = instance.get_run_by_id(answer.json()["run_id"])
    assert run.tags["dagster/partition"] == "2026-01-01"
    assert any(op.get("config", {}).get("dry_run") is True for op in run.run_config["ops"].values())


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/maintenance/tasks/no_such_task/run", None, 404, "unknown task 'no_such_task'"),
        ("/maintenance/tasks/log_rotation/run", {"dry_run": "maybe"}, 422, "dry_run"),
        ("/maintenance/tasks/log_rotation/run", {"surprise": 1}, 422, "surprise"),
        ("/maintenance/tasks/log_rotation/run", {"partition": "2026-01-01"}, 422, "not partitioned"),
        ("/maintenance/tasks/trading_data_maintenance/run", {"partition": "../../etc"}, 422, "partition"),
        ("/maintenance/tasks/system_health_check/run", {"dry_run": True}, 422, "has no dry run"),
    ],
)
def test_bad_requests_get_json_naming_the_field_and_start_nothing(client, instance, path, body, status, words):
    answer = client.post(path, json=body) if body is not None else client.post(path)
    assert answer.status_code == status
    assert words in answer.json()["message"]
    assert "Traceback" not in answer.text
    assert instance.get_runs_count() == 0


def test_unknown_task_lists_the_valid_names(client):
    answer = client.post("/maintenance/tasks/nope/run").json()
    assert "log_rotation" in answer["valid"] and "system_health_check" in answer["valid"]


def test_emergency_without_a_name_submits_only_the_emergency_job(client, instance):
    answer = client.post("/maintenance/emergency")
    assert answer.status_code == 202
    runs = instance.get_runs()
    assert [run.job_name for run in runs] == ["emergency_maintenance_job"]
    assert runs[0].tags["dagster/priority"] == "10"
    named = client.post("/maintenance/emergency", params={"task_name": "cache_cleanup"})
    assert instance.get_run_by_id(named.json()["run_id"]).job_name == "cache_cleanup_job"


def test_run_all_submits_every_routine_task_once(client, instance):
    from trading_maintenance.tasks import TASKS

    answer = client.post("/maintenance/run-all")
    assert answer.status_code == 202
    jobs = sorted(run.job_name for run in instance.get_runs())
    assert jobs == sorted(task.job_name for task in TASKS.values() if task.in_run_all)
    assert "emergency_maintenance_job" not in jobs


def test_status_shows_health_with_reasons_results_queue_and_alerts(client, instance, redis_client):
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key="system_health",
        metadata={"health_score": 59.0, "health_status": "red", "reason_list": dg.MetadataValue.json(["redis: unreachable"]),
                  "component_list": dg.MetadataValue.json([{"name": "redis", "status": "red", "score": 0, "reason": "unreachable"}])},
    ))
    publish_result(redis_client, "log_rotation", {"status": "success", "run_id": "abc", "bytes_freed": 12})
    redis_client.lpush("maintenance:alerts", json.dumps({"key": "health:redis", "severity": "critical", "title": "Redis down",
                                                         "message": "unreachable", "created_at": "2026-01-01T00:00:00+00:00"}))
    queued = client.post("/maintenance/tasks/cache_cleanup/run").json()["run_id"]
    status = client.get("/maintenance/status").json()
    assert status["health"]["score"] == 59.0 and status["health"]["status"] == "red"
    assert status["health"]["reasons"] == ["redis: unreachable"]
    assert status["health"]["components"][0]["name"] == "redis"
    assert [run["run_id"] for run in status["queued_runs"]] == [queued]
    result = next(r for r in status["last_results"] if r["task"] == "log_rotation")
    assert result["status"] == "success" and result["details"]["bytes_freed"] == 12
    assert status["active_alerts"][0]["title"] == "Redis down"


def test_history_run_detail_and_metrics_come_from_run_storage(client, instance):
    @dg.op
    def rotate(context):
        context.add_output_metadata({"bytes_freed": 1000, "files_deleted": 3, "files_compressed": 2})
        return 1

    @dg.job(name="log_rotation_job", tags={"maintenance/task": "log_rotation"})
    def fake_rotation():
        rotate()

    for _ in range(3):
        assert fake_rotation.execute_in_process(instance=instance).success
    history = client.get("/maintenance/history", params={"limit": 2, "task": "log_rotation"}).json()
    assert len(history) == 2 and {row["status"] for row in history} == {"SUCCESS"}
    detail = client.get(f"/maintenance/runs/{history[0]['run_id']}").json()
    assert detail["status"] == "SUCCESS" and detail["duration_s"] is not None
    assert detail["metadata"]["rotate.bytes_freed"] == 1000
    metrics = client.get("/maintenance/metrics", params={"task_name": "log_rotation"}).json()["tasks"][0]
    week = metrics["windows"][0]
    assert (week["days"], week["runs"], week["success_rate"]) == (7, 3, 1.0)
    assert week["bytes_freed"] == 3000 and week["files_processed"] == 15
    assert client.get("/maintenance/runs/00000000-0000-0000-0000-000000000000").status_code == 404
    assert client.get("/maintenance/history", params={"task": "nope"}).status_code == 404


def test_pause_and_resume_change_dagsters_own_schedule_state(client, instance):
    paused = client.post("/maintenance/schedule/log_rotation_schedule/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "STOPPED"
    state = next(s for s in instance.all_instigator_state() if s.name == "log_rotation_schedule")
    assert state.status.value == "STOPPED"
    assert client.post("/maintenance/schedule/log_rotation_schedule/resume").json()["status"] == "RUNNING"
    state = next(s for s in instance.all_instigator_state() if s.name == "log_rotation_schedule")
    assert state.status.value == "RUNNING"
    sensor = client.post("/maintenance/schedule/emergency_maintenance_sensor/pause").json()
    assert sensor["kind"] == "sensor" and sensor["status"] == "STOPPED"
    unknown = client.post("/maintenance/schedule/nope/pause")
    assert unknown.status_code == 404 and "log_rotation_schedule" in unknown.json()["valid"]
    listed = {item["name"]: item for item in client.get("/maintenance/schedule").json()["items"]}
    assert listed["log_rotation_schedule"]["status"] == "RUNNING" and listed["log_rotation_schedule"]["next_tick"]


def test_token_is_required_when_configured(instance):
    with TestClient(make_app(instance, token="s3cret-token")) as client:
        assert client.get("/maintenance/status").status_code == 401
        assert client.get("/maintenance/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
        refused = client.post("/maintenance/tasks/log_rotation/run", headers={"Authorization": "Basic s3cret-token"})
        assert refused.status_code == 401 and "s3cret-token" not in refused.text
        assert instance.get_runs_count() == 0
        assert client.get("/maintenance/status", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert client.get("/health").json()["status"] == "ok"


def test_without_a_token_the_api_refuses_to_bind_beyond_loopback():
    from trading_maintenance.api.server import UnsafeBind, check_bind

    with pytest.raises(UnsafeBind, match="MAINTENANCE_API_TOKEN"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "token")
    check_bind("127.0.0.1", None)
    check_bind("localhost", None)


def test_unknown_routes_and_failures_answer_json(client, monkeypatch):
    assert client.get("/maintenance/nothing-here").json()["message"].startswith("no route")
    from trading_maintenance.api import queries

    monkeypatch.setattr(queries, "status", lambda ctx: 1 / 0)
    broken = client.get("/maintenance/status")
    assert broken.status_code == 500 and broken.json()["message"].endswith("ZeroDivisionError: division by zero")


def test_every_route_is_typed_in_the_openapi_document(client):
    document = client.get("/openapi.json").json()
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            success = next(code for code in operation["responses"] if code.startswith("2"))
            content = operation["responses"][success]["content"]
            assert "application/json" in content or "text/html" in content, (method, path)
            if "application/json" in content:
                assert content["application/json"]["schema"], (method, path)
