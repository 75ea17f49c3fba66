-- The spool's tables are queues: every envelope's rows are inserted and,
-- within a day, deleted. Their space is reused only once vacuum has
-- recorded it as free; until then every new envelope extends the table
-- by new pages (measured: most of the server's time filing 1 MiB,
-- BENCHMARKS.md, issue 12). With the default scale factor (20% of the
-- table's rows) a spool holding a day of envelopes waits for a fifth of
-- its size in dead rows; here a fixed number of dead rows (a few MiB of
-- envelopes) starts a vacuum at autovacuum's next visit, and the vacuum
-- runs without cost-based pauses, since its pages are few and recent.
ALTER TABLE spool_chunks SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000, -- rows of 8000 bytes: about 8 MB
    autovacuum_vacuum_cost_delay = 0,
    toast.autovacuum_vacuum_scale_factor = 0, -- rows stored before 0004
    toast.autovacuum_vacuum_threshold = 4000,
    toast.autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE spool_envelopes SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 200,
    autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE spool_uploads SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 200,
    autovacuum_vacuum_cost_delay = 0
);
-- Server copies are kept longer but swept the same way; their 64 KiB
-- rows are stored out of line, in the TOAST table, in pieces of 2 KB.
ALTER TABLE copy_chunks SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 200,
    autovacuum_vacuum_cost_delay = 0,
    toast.autovacuum_vacuum_scale_factor = 0,
    toast.autovacuum_vacuum_threshold = 4000,
    toast.autovacuum_vacuum_cost_delay = 0
);
