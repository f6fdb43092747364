"""Security audit: secrets in logs, permissions, API keys, exposed services (weekly and on demand)."""
