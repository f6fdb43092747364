"""TradeNote exports: one Template CSV per calendar day of the journal, checked against the database's P&L."""
