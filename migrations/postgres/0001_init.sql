-- certgate schema, PostgreSQL dialect. Never edit an applied migration; add a new file.
-- Flags are INTEGER 0/1 and times Unix seconds (BIGINT) so both backends decode alike.

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    -- Bumped by every writing transaction of the organization: it serialises writers
    -- (row lock on PostgreSQL, write lock on SQLite) and orders objects created in one second.
    seq         BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE admin_keys (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES organizations(id),
    name          TEXT NOT NULL,
    key_sha256    TEXT NOT NULL UNIQUE,
    redacted      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);

CREATE TABLE projects (
    id               TEXT PRIMARY KEY,
    org_id           TEXT NOT NULL REFERENCES organizations(id),
    name             TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    seq              BIGINT NOT NULL,
    archived_at      BIGINT,
    external_key_id  TEXT,
    residency        TEXT
);
CREATE INDEX projects_org_order ON projects (org_id, created_at, seq);

CREATE TABLE certificates (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES organizations(id),
    name          TEXT,
    content       TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    subject_der   TEXT NOT NULL,
    ski           TEXT NOT NULL,
    valid_at      BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    active_org    BIGINT NOT NULL DEFAULT 0,
    -- Deleted certificates stay as tombstones (content cleared) so their ids remain valid cursors.
    deleted_at    BIGINT
);
CREATE INDEX certificates_org_order ON certificates (org_id, created_at, seq);
CREATE UNIQUE INDEX certificates_org_sha256 ON certificates (org_id, sha256) WHERE deleted_at IS NULL;

CREATE TABLE project_activations (
    certificate_id  TEXT NOT NULL REFERENCES certificates(id),
    project_id      TEXT NOT NULL REFERENCES projects(id),
    org_id          TEXT NOT NULL,
    PRIMARY KEY (certificate_id, project_id)
);
CREATE INDEX project_activations_project ON project_activations (project_id);

-- One row. Every write that changes who may connect bumps it in the same transaction;
-- gateways watch it.
CREATE TABLE trust_state (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    generation  BIGINT NOT NULL
);
INSERT INTO trust_state (id, generation) VALUES (1, 0);

-- Facts about the installation, e.g. that the default organization was bootstrapped.
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
