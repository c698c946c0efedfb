"""AIOS host: one MCP endpoint composing the subsystem servers, and their supervisor."""
