CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE clients (client_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE groups (group_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE agents (agent_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE jobs (
  job_id TEXT PRIMARY KEY,
  client_id TEXT NOT NULL REFERENCES clients(client_id),
  state TEXT NOT NULL,
  seq INTEGER NOT NULL,
  assigned_agent_id TEXT,
  idempotency_key TEXT,
  body TEXT NOT NULL
);
CREATE INDEX jobs_state ON jobs(state, seq);
CREATE INDEX jobs_client ON jobs(client_id, seq);
CREATE INDEX jobs_agent ON jobs(assigned_agent_id, seq);
CREATE UNIQUE INDEX jobs_idempotency ON jobs(client_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE TABLE steps (
  job_id TEXT NOT NULL REFERENCES jobs(job_id),
  step_id TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  result TEXT,
  elapsed_ms INTEGER,
  completed_at INTEGER,
  PRIMARY KEY (job_id, step_id)
) WITHOUT ROWID;
CREATE TABLE transitions (
  id INTEGER PRIMARY KEY,
  job_id TEXT NOT NULL,
  from_state TEXT,
  to_state TEXT NOT NULL,
  trigger TEXT NOT NULL,
  reason TEXT,
  at INTEGER NOT NULL
);
CREATE INDEX transitions_job ON transitions(job_id, id);
CREATE TABLE ledger (
  id INTEGER PRIMARY KEY,
  client_id TEXT NOT NULL,
  delta REAL NOT NULL,
  kind TEXT NOT NULL,
  job_id TEXT,
  at INTEGER NOT NULL
);
CREATE INDEX ledger_client ON ledger(client_id, id);
CREATE TABLE leases (
  lease_id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  status TEXT NOT NULL
);
CREATE INDEX leases_active ON leases(status, expires_at);
CREATE TABLE evaluations (
  id INTEGER PRIMARY KEY,
  agent_id TEXT NOT NULL,
  body TEXT NOT NULL,
  at INTEGER NOT NULL
);
CREATE INDEX evaluations_agent ON evaluations(agent_id, id);
CREATE TABLE reputations (
  agent_id TEXT PRIMARY KEY,
  reputation REAL NOT NULL,
  evaluation_count INTEGER NOT NULL
);
CREATE TABLE pipelines (pipeline_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE events (
  pipeline_id TEXT NOT NULL REFERENCES pipelines(pipeline_id),
  sequence INTEGER NOT NULL,
  event_id TEXT NOT NULL,
  stage TEXT NOT NULL,
  type TEXT NOT NULL,
  data TEXT NOT NULL,
  timestamp INTEGER NOT NULL,
  PRIMARY KEY (pipeline_id, sequence)
) WITHOUT ROWID;
CREATE TABLE cursors (
  pipeline_id TEXT NOT NULL,
  stage TEXT NOT NULL,
  acked INTEGER NOT NULL,
  PRIMARY KEY (pipeline_id, stage)
) WITHOUT ROWID;
CREATE TABLE requests (request_id TEXT PRIMARY KEY, tool TEXT NOT NULL, response TEXT NOT NULL);
