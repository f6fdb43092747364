import dagster as dg

from trading_maintenance.defs.common import job_tags
from trading_maintenance.defs.security.ops import (
    check_api_keys,
    check_exposed_services,
    check_file_permissions,
    scan_log_secrets,
    write_security_report,
)


@dg.job(
    description="Security audit: secrets in logs (masked, baselined, SARIF), owner-only permissions, API key age and acceptance, exposed services.",
    tags=job_tags("security_audit"),
)
def security_audit_job():
    secrets = scan_log_secrets()
    write_security_report(
        secrets=secrets,
        permissions=check_file_permissions(secrets),
        keys=check_api_keys(),
        exposure=check_exposed_services(),
    )
