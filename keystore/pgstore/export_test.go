package pgstore

// SpoolChunk is spoolChunk for the tests of package pgstore_test.
const SpoolChunk = spoolChunk
