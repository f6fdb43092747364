"""Security audit: secrets in logs, permissions, API keys, exposed services (weekly and on demand)."""

import dagster as dg

from trading_maintenance.defs.security.jobs import security_audit_job
from trading_maintenance.defs.security.ops import SECURITY_AUDIT_ASSET
from trading_maintenance.defs.security.schedules import security_audit_schedule

security_audit_report = dg.AssetSpec(
    SECURITY_AUDIT_ASSET,
    description="The weekly security audit's JSON and SARIF reports under reports/security/; plots show critical findings over time.",
    group_name="security",
    kinds={"python", "json"},
)

defs = dg.Definitions(
    assets=[security_audit_report],
    jobs=[security_audit_job],
    schedules=[security_audit_schedule],
)
