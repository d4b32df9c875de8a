-- Sqlite dialect. What each trust-changing write changed (spec §13.3, decisions.md D50): gateways
-- (and `certgate authz`) apply only the changes since the generation they hold, re-reading
-- just the rows named here, instead of the whole trust state.
-- Expand only: a replica of the previous version keeps working on this schema. It moves the
-- generation without recording what changed; readers of this version see a generation with no
-- record as a gap and read the full state then, so nothing is ever missed.

-- One row per thing a write touched, under the generation the write moved to, written in the
-- same transaction. kind: 'organization' (target: its id), 'project' (the project's id),
-- 'certificate' (the certificate's id: its row, activations and CRL), 'crl' (the certificate's
-- id: its CRL only), 'deny' (the deny-listed lowercase hex SHA-256).
CREATE TABLE trust_changes (
    generation  BIGINT NOT NULL,
    org_id      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    target      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (generation, kind, target)
);
-- Pruning (records older than the slowest reasonable reader, 1 h by default) is by age.
CREATE INDEX trust_changes_created_at ON trust_changes (created_at);
