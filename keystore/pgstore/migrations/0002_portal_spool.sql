-- The portal's uploaded envelopes (ciphertext), shared by every portal
-- host: chunks of an upload, the upload's reservation while it is being
-- written, and the envelope's token once committed.
CREATE TABLE spool_meta (
    id        int4  PRIMARY KEY CHECK (id = 1),
    token_key bytea NOT NULL
);

CREATE TABLE spool_uploads (
    id       int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reserved int8 NOT NULL,
    began_ns int8 NOT NULL -- the real clock of the host that began it
);

CREATE TABLE spool_envelopes (
    token      text PRIMARY KEY,
    upload_id  int8 NOT NULL UNIQUE,
    size       int8 NOT NULL,
    touched_ns int8 NOT NULL -- the portal handler's clock
);
CREATE INDEX spool_envelopes_touched ON spool_envelopes (touched_ns);

CREATE TABLE spool_chunks (
    upload_id int8  NOT NULL,
    seq       int4  NOT NULL,
    data      bytea NOT NULL,
    PRIMARY KEY (upload_id, seq)
);
-- Ciphertext does not compress: store it out of line without trying.
ALTER TABLE spool_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
