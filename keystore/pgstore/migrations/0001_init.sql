-- securemail schema 1. Times are int8 nanoseconds since the Unix epoch
-- (UTC), NULL for "none": timestamptz keeps only microseconds, and the
-- store's contract compares to the nanosecond.

CREATE TABLE keys (
    id            bytea PRIMARY KEY,
    wrapped_dek   bytea,          -- NULL once shredded
    master_key_id text   NOT NULL,
    sender        text   NOT NULL,
    recipients    text[] NOT NULL, -- lowercased
    created       int8   NOT NULL,
    expires       int8,
    revoked       int8,
    message_id    text   NOT NULL,
    size          int8   NOT NULL
);
CREATE INDEX keys_expires ON keys (expires) WHERE expires IS NOT NULL;

CREATE TABLE accounts (
    email         text COLLATE "C" PRIMARY KEY, -- lowercased; listed in byte order
    password_hash text  NOT NULL,
    questions     jsonb NOT NULL,
    created       int8,
    verified_at   int8,
    password_set  int8
);

CREATE TABLE codes (
    purpose    text  NOT NULL,
    email      text  NOT NULL, -- lowercased
    digest     bytea NOT NULL,
    expires    int8, -- NULL: ended
    tries_left int4  NOT NULL,
    PRIMARY KEY (purpose, email)
);
CREATE INDEX codes_expires ON codes (expires);

CREATE TABLE sessions (
    digest    bytea PRIMARY KEY,
    email     text NOT NULL, -- lowercased, may be empty
    stage     text NOT NULL,
    token     text NOT NULL,
    created   int8,
    last_seen int8,
    expires   int8
);
CREATE INDEX sessions_email ON sessions (email);
CREATE INDEX sessions_expires ON sessions (expires);

CREATE TABLE throttles (
    key          text PRIMARY KEY,
    consecutive  int4 NOT NULL,
    last_failure int8,
    window_start int8,
    in_window    int4 NOT NULL
);

CREATE TABLE limits (
    key      text PRIMARY KEY,
    start_ns int8 NOT NULL,
    end_ns   int8 NOT NULL,
    count    int4 NOT NULL,
    allowed  bool NOT NULL -- the outcome of the last Hit, for RETURNING
);
CREATE INDEX limits_end ON limits (end_ns);

CREATE TABLE reads (
    seq    int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_id bytea NOT NULL,
    reader text  NOT NULL,
    at     int8  NOT NULL,
    remote text  NOT NULL
);
CREATE INDEX reads_key ON reads (key_id, at, seq);
