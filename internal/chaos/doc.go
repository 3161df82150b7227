// Package chaos is a Jepsen-style fault campaign against real pgquorum
// clusters: three to five hosts as network namespaces on a bridge, each
// running a pgquorum node that runs PostgreSQL 15, a PgBouncer with its
// bouncer agent in a namespace of its own, and a client namespace. Clients
// write through PgBouncer and record every attempt; nemeses partition,
// kill, pause, freeze, fill and stall hosts and change the membership on a
// schedule drawn from a recorded seed; checkers then prove that no
// acknowledged write was lost, that no two primaries acknowledged writes
// in overlapping periods, that no write reached an older primary after the
// bouncer agent acknowledged a newer epoch, that a register stayed
// linearizable, and that the cluster healed by itself and wrote again
// within each fault's bound.
//
// The harness needs root and builds only with the build tag chaos
// (`make chaos`, `make test` runs TestChaosShort). The history model and
// the checkers carry no tag so that their unit tests run everywhere.
// docs/chaos.md says how to run it and what the last campaign found.
package chaos
