-- Sqlite dialect. Each stored CRL's size and content hash (spec §13.5): the organization's
-- limit on stored CRL bytes is one SUM in the writing transaction, and gateways fetch the DER
-- only of the CRL versions (CA, content hash) they do not already hold.
-- Expand only: a replica of the previous version keeps working on this schema; it stores CRLs
-- without these columns, and readers of this version cope with the NULLs it leaves.

-- Lowercase hex SHA-256 of the DER, written with every CRL from this version on. NULL for a
-- CRL stored before (SQLite has no SHA-256 function to backfill it with) or by a previous
-- version: readers then name that CRL's version after `seq`, which every store of a CRL moves.
ALTER TABLE certificate_crls ADD COLUMN der_sha256 TEXT;
-- The DER's size in bytes. NULL only for a CRL a previous version stores from now on (readers
-- then take it from the base64's length).
ALTER TABLE certificate_crls ADD COLUMN der_bytes BIGINT;
UPDATE certificate_crls SET der_bytes = length(der_base64) / 4 * 3
    - (CASE WHEN der_base64 LIKE '%==' THEN 2 WHEN der_base64 LIKE '%=' THEN 1 ELSE 0 END);
CREATE INDEX certificate_crls_org ON certificate_crls (org_id);
