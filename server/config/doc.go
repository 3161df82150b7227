// Package config is the configuration of a pgquorum node and of the
// `pgquorum bouncer` agent: the structs, loading (YAML file, PGQUORUM_*
// environment variables, flags), validation and the timing rules. It imports
// nothing else of pgquorum.
//
// # Sources
//
// Every key is written in YAML as in docs/configuration.md, and every leaf
// key is also an environment variable (PGQUORUM_ + the key upper-cased with
// dots turned into underscores: raft.bind_addr is PGQUORUM_RAFT_BIND_ADDR) and
// a flag named like the key (--raft.bind_addr). The bouncer agent's variables
// start with PGQUORUM_BOUNCER_. Precedence, highest first: flags, environment,
// file, the timing profile's defaults, the built-in defaults. Lists are
// comma-separated in variables and flags, maps are name=value pairs
// separated by commas (CSV quoting for values with commas), lists of objects
// are YAML or JSON text.
//
// Unknown keys in the file, unknown PGQUORUM_* variables, duplicate keys and
// values of the wrong type are refused with the file and line or the
// variable. Load and LoadBouncer validate what they load, and report every
// problem at once.
//
// # Timing
//
// timing.profile (fast, default, conservative) sets the defaults of ttl,
// loop_wait, retry_timeout and safety_margin; keys set explicitly override
// it. The four are validated together:
//
//	ttl >= 500ms, loop_wait >= 50ms, retry_timeout >= 50ms, safety_margin >= 50ms
//	loop_wait * 3 <= ttl                              at least three renewals per lease
//	retry_timeout + loop_wait + safety_margin <= ttl  a failed renewal times out and the next one
//	                                                  starts before the primary must fence itself
//	safety_margin <= ttl / 2
//
// The primary fences itself ttl - safety_margin after sending its last
// committed renewal; the decider assigns a new primary no sooner than ttl +
// safety_margin after it observed the last renewal. Raft's timeouts are
// derived, never set (see Timing.RaftTimeouts).
package config

//go:generate go run ./internal/gendoc -o ../../docs/configuration.md
