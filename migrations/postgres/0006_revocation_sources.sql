-- Postgres dialect. Revocation fetched from the CA's own sources (spec §13.4, decisions.md D58):
-- a CA certificate's CRL URL and OCSP mode, and one lease row per CRL URL so that replicas
-- fetch each URL once per interval between them.
-- Expand only: a replica of the previous version ignores these columns and this table.

-- The http(s) URL certgate keeps the CA's CRL fetched from; NULL: none.
ALTER TABLE certificates ADD COLUMN crl_url TEXT;
-- 'soft_fail' or 'hard_fail'; NULL: off (the default, never stored as text).
ALTER TABLE certificates ADD COLUMN ocsp TEXT;

-- One row per CRL URL some certificate names. A replica fetches a URL only after claiming its
-- row (an UPDATE that succeeds when the row is due and no live lease holds it); after the fetch
-- it writes when the URL is due next and how many fetches in a row failed (the backoff).
CREATE TABLE crl_fetch_leases (
    url             TEXT PRIMARY KEY,
    -- Unix seconds: the next fetch is due at this time.
    next_fetch_at   BIGINT NOT NULL,
    -- Which replica holds the lease (random per process), and until when (Unix seconds).
    holder          TEXT,
    lease_until     BIGINT NOT NULL,
    -- Failed fetches since the last success (0 after one).
    failures        BIGINT NOT NULL
);
