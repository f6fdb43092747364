"""Database maintenance: vacuum, analyze, reindex and purge of the trading database, weekly."""
