"""Partitions of market data: the collector's trading days and the monthly archives."""

import dagster as dg

from trading_maintenance.defs.task import maintenance_timezone, partitions_start

# end_offset=1: the current month exists as a partition, so it can be consolidated "so far" on demand.
market_data_monthly_partitions = dg.MonthlyPartitionsDefinition(
    start_date=partitions_start(), timezone=maintenance_timezone(), end_offset=1
)
market_data_daily_partitions = dg.DailyPartitionsDefinition(
    start_date=partitions_start(), timezone=maintenance_timezone(), end_offset=1
)


def month_of_key(partition_key: str) -> str:
    """'2024-03-01' -> '2024-03'."""
    return partition_key[:7]
