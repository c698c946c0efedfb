CREATE TABLE usage (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    caller TEXT NOT NULL,
    agent_id TEXT,
    job_id TEXT,
    operation TEXT NOT NULL,
    model TEXT NOT NULL,
    backend TEXT NOT NULL,
    outcome TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens INTEGER NOT NULL CHECK (completion_tokens >= 0),
    total_ms REAL NOT NULL,
    load_ms REAL NOT NULL,
    prompt_ms REAL NOT NULL,
    completion_ms REAL NOT NULL,
    cost REAL NOT NULL CHECK (cost >= 0)
);
CREATE INDEX usage_caller ON usage (caller, seq);
CREATE INDEX usage_agent ON usage (agent_id, seq);
CREATE INDEX usage_job ON usage (job_id, seq);
CREATE TABLE pins (
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    pinned_at TEXT NOT NULL,
    PRIMARY KEY (backend, model)
);
