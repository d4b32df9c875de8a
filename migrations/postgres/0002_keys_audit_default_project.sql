-- PostgreSQL dialect. Admin keys that can be listed, expire, record their last use and be deleted (as tombstones);
-- an audit log written in the transaction of every change; every organization's Default
-- project. Expand only: a replica of the previous version keeps working on this schema.

-- `revoked_at` (0001) marks a deleted key: the row stays so its id remains a list cursor.
ALTER TABLE admin_keys ADD COLUMN expires_at BIGINT;
ALTER TABLE admin_keys ADD COLUMN last_used_at BIGINT;
-- The organization's counter at insert: orders keys created in the same second.
ALTER TABLE admin_keys ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX admin_keys_org_order ON admin_keys (org_id, created_at, seq);

-- 1 for the organization's Default project (exactly one each): it cannot be modified or archived.
ALTER TABLE projects ADD COLUMN is_default BIGINT NOT NULL DEFAULT 0;

-- One row per event. Order (newest first) is (effective_at, seq, idx): `seq` is the
-- organization's counter of the writing transaction, `idx` the event's place in it.
CREATE TABLE audit_events (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES organizations(id),
    effective_at  BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    idx           BIGINT NOT NULL,
    type          TEXT NOT NULL,
    -- NULL: certgate itself (CLI, bootstrap, migration), shown as `actor: null`.
    actor_key_id  TEXT,
    -- The top-level `project` ({id, name}), when the event has one.
    project_id    TEXT,
    project_name  TEXT,
    -- The JSON of the property named like `type`.
    payload       TEXT NOT NULL
);
CREATE UNIQUE INDEX audit_events_org_order ON audit_events (org_id, effective_at, seq, idx);

-- What `resource_ids[]` matches: each certificate, project or key an event is about.
CREATE TABLE audit_event_resources (
    org_id       TEXT NOT NULL,
    resource_id  TEXT NOT NULL,
    event_id     TEXT NOT NULL REFERENCES audit_events(id) ON DELETE CASCADE,
    PRIMARY KEY (org_id, resource_id, event_id)
);
CREATE INDEX audit_event_resources_event ON audit_event_resources (event_id);

-- Existing organizations get their Default project now, with its `project.created` event
-- (actor null), like new ones get it at creation.
UPDATE organizations SET seq = seq + 1;
INSERT INTO projects (id, org_id, name, created_at, seq, archived_at, external_key_id, residency, is_default)
SELECT 'proj_' || substr(md5(random()::text || clock_timestamp()::text || id), 1, 24), id, 'Default project',
       CAST(EXTRACT(EPOCH FROM now()) AS BIGINT), seq, NULL, NULL, NULL, 1
FROM organizations;
INSERT INTO audit_events (id, org_id, effective_at, seq, idx, type, actor_key_id, project_id, project_name, payload)
SELECT 'audit_log-' || lpad(to_hex(created_at), 10, '0') || lpad(to_hex(seq), 12, '0') || '0000' || substr(md5(random()::text || id), 1, 8),
       org_id, created_at, seq, 0, 'project.created', NULL, id, name,
       '{"id":"' || id || '","data":{"name":"Default project","title":"Default project"}}'
FROM projects WHERE is_default = 1;
INSERT INTO audit_event_resources (org_id, resource_id, event_id)
SELECT org_id, project_id, id FROM audit_events WHERE type = 'project.created';
