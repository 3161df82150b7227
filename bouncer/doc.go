// Package bouncer drives a local PgBouncer so that it routes each database to
// the primary committed by the quorum, and fences the old primary first.
//
// Admin talks to PgBouncer's admin console (PAUSE, RESUME, KILL, RELOAD, SET,
// SHOW). Render and WriteFileAtomic produce the [databases] include file that
// the agent owns. Router combines them into per-database sequences that carry
// a fencing epoch: Fence, Expose, Switch, and Tune for PgBouncer's retry
// timers. Rationale and measured behaviour of PgBouncer 1.18 are in
// DESIGN.md in this directory.
//
// The package does not import the server, FSM, RPC or pgnode packages; the
// agent that consumes Watch streams calls it.
package bouncer
