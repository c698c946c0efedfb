"""The ``aios`` command: an operator CLI that talks MCP to the AIOS host."""
