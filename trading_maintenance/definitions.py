"""The one Definitions: `dagster dev`, `dagster job execute -m trading_maintenance.definitions`,
`dg launch` and workspace.yaml all load this module.

Settings are validated here, at load: a bad value fails loading with a message naming the file or
variable and the key, instead of failing at the first run.
"""

import dagster as dg

from trading_maintenance.defs import emergency, health, intelligence, reports
from trading_maintenance.defs import hygiene
from trading_maintenance.defs import reconciliation
from trading_maintenance.defs import tradenote
from trading_maintenance.defs import database
from trading_maintenance.defs import market_data
from trading_maintenance.defs import security
from trading_maintenance.defs import backups
from trading_maintenance.resources import build_resources
from trading_maintenance.settings import get_settings

# Each domain package exposes a resource-free `defs`; resources are bound once, below.
DOMAINS = [
    health,
    emergency,
    intelligence,
    reports,
    hygiene,
    reconciliation,
    tradenote,
    database,
    market_data,
    security,
    backups,
]

defs = dg.Definitions.merge(
    *(domain.defs for domain in DOMAINS),
    dg.Definitions(resources=build_resources(get_settings())),
)
