"""Portfolio reconciliation: the broker, the database and Redis compared, Fridays and on demand."""
