"""AIOS tools server (issue 5). So far: the persisted capability-token state (``store``)."""
