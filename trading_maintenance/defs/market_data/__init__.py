"""Market data: the collector's daily files (external), monthly archives, and the cleanup of daily
files that a verified archive covers."""
