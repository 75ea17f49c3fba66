-- Server copies of sealed messages' envelopes (portal.link_fallback): the
-- key record says until when its copy is kept, the description is found
-- by the link's digest, and the envelope is kept in chunks.
ALTER TABLE keys ADD COLUMN copy_until int8;

CREATE TABLE copies (
    key_id      bytea PRIMARY KEY,
    link_digest bytea NOT NULL UNIQUE, -- SHA-256 of the link token
    created     int8  NOT NULL,
    keep_until  int8  NOT NULL,
    size        int8  NOT NULL,
    deleted     int8 -- NULL while the envelope is kept
);
CREATE INDEX copies_keep_until ON copies (keep_until) WHERE deleted IS NULL;

CREATE TABLE copy_chunks (
    key_id bytea NOT NULL,
    seq    int4  NOT NULL,
    data   bytea NOT NULL,
    PRIMARY KEY (key_id, seq)
);
-- Ciphertext does not compress: store it out of line without trying.
ALTER TABLE copy_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
