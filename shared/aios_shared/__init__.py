"""Code every AIOS server shares: config, errors, db, audit, telemetry, runner, peers."""
