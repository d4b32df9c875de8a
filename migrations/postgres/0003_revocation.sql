-- Postgres dialect. Revocation without rotating a CA: a deny-list of certificates by
-- SHA-256, one CRL per CA certificate, and a client filter (CEL) per CA certificate.
-- Expand only: a replica of the previous version keeps working on this schema.

-- Deleted entries stay as tombstones (deleted_at set) so their ids remain list cursors.
CREATE TABLE revoked_certificates (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES organizations(id),
    -- Lowercase hex of the SHA-256 of the certificate's DER.
    sha256        TEXT NOT NULL,
    reason        TEXT,
    created_at    BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    deleted_at    BIGINT
);
CREATE INDEX revoked_certificates_org_order ON revoked_certificates (org_id, created_at, seq);
CREATE UNIQUE INDEX revoked_certificates_org_sha256 ON revoked_certificates (org_id, sha256) WHERE deleted_at IS NULL;

-- The CRL stored for a CA certificate (issued by it, signature checked at upload).
CREATE TABLE certificate_crls (
    certificate_id  TEXT PRIMARY KEY REFERENCES certificates(id),
    org_id          TEXT NOT NULL,
    -- The DER, base64: TEXT keeps both backends decoding alike.
    der_base64      TEXT NOT NULL,
    this_update     BIGINT NOT NULL,
    next_update     BIGINT,
    revoked_count   BIGINT NOT NULL,
    -- The organization's counter of the storing transaction: a new CRL has a new one, so
    -- gateways reparse only what changed.
    seq             BIGINT NOT NULL
);

-- A CEL expression every client certificate must satisfy for this CA to admit it (NULL: none).
ALTER TABLE certificates ADD COLUMN client_filter TEXT;
