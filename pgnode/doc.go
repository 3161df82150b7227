// Package pgnode manages the PostgreSQL server on one host: it initialises
// and clones data directories, writes the configuration the agent owns,
// starts, stops, adopts, promotes, demotes and rewinds the postmaster, and
// probes it through pgx.
//
// pgnode knows nothing about Raft, the cluster state or other members'
// health; the server's actuator drives it through a small interface of its
// own. Every operation is idempotent and safe to retry, and none of them
// deletes a data directory before a replacement exists. When the agent runs
// as root, PostgreSQL and its tools run as Config.OSUser; the PID pgnode
// starts is the postmaster itself, so a restarted agent can adopt it from
// postmaster.pid without restarting it. See docs/pgnode.md for the
// rationale behind the main choices.
package pgnode
