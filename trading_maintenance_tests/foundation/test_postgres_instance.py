"""The production dagster.yaml stores runs and events in PostgreSQL (dagster-postgres), tested on the real server."""

import shutil

import dagster as dg
from sqlalchemy.engine import make_url

from trading_maintenance.defs.health.ops import check_system_health, system_health_check_job
from trading_maintenance.settings import PROJECT_ROOT
from trading_maintenance_tests.conftest import run_asset_job


def test_production_instance_config_on_real_postgres(tmp_path, pg_url, make_resources, monkeypatch):
    url = make_url(pg_url)
    if not url.host:
        import pytest

        pytest.skip("the embedded PostgreSQL (pgserver) listens on a Unix socket only; dagster-postgres needs a TCP host")
    home = tmp_path / "prod_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_USER", url.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", url.database)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = run_asset_job(system_health_check_job, [check_system_health], resources=make_resources(), instance=instance)
        assert result.success
    with dg.DagsterInstance.from_config(str(home)) as reopened:  # survives a restart
        run = reopened.get_run_by_id(result.run_id)
        assert run is not None and run.is_success
        assert reopened.fetch_materializations(dg.AssetKey("system_health"), limit=1).records
