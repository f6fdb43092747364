"""Data hygiene: data cleanup, log rotation, Redis cache cleanup, API rate limits, performance and resources."""
