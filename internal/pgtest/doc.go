// Package pgtest starts real, throwaway PostgreSQL and PgBouncer servers for
// integration tests.
//
// Servers listen on 127.0.0.1 with free ports, keep all their files in
// t.TempDir(), run as the postgres OS user when the test runs as root, and
// are stopped by PID in t.Cleanup. Tests that need them call SkipIfMissing
// first, so `go test -short` and machines without the binaries skip cleanly.
//
// Binaries default to Debian's locations and can be overridden with
// PGQUORUM_PGBIN (the PostgreSQL bin directory) and PGQUORUM_PGBOUNCER (the
// pgbouncer executable).
package pgtest
