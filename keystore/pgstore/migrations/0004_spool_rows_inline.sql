-- Spooled envelopes are stored in rows of at most 8000 bytes, kept whole
-- in their heap page: out of line (TOAST) every 64 KiB row became 33
-- toast rows, each inserted and indexed on its own, and filing a new
-- envelope cost the server about twice the processor time. Rows already
-- stored stay as they are and read the same.
ALTER TABLE spool_chunks ALTER COLUMN data SET STORAGE PLAIN;
