"""Append audit entries in a tight loop until killed (for the kill -9 test in test_audit.py).

Writes ``<position> <entry_hash>`` to stdout after each append has committed, so every line the
test reads is an acknowledged entry.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from aios_shared.audit import AuditLog, audit_migration
from aios_shared.db import Database


async def main(path: Path) -> None:
    async with Database.open(path, migrations=[audit_migration(1)], synchronous="FULL") as db:
        log = AuditLog(db)
        index = 0
        while True:
            entry = await log.append("writer", "burst", f"item-{index}", "ok", {"index": index})
            sys.stdout.write(f"{entry.position} {entry.entry_hash}\n")
            sys.stdout.flush()
            index += 1


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]))
