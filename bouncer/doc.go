// Package bouncer drives a local PgBouncer so that it routes each database to
// the primary committed by the quorum, and fences the old primary first.
//
// Admin talks to PgBouncer's admin console (PAUSE, RESUME, RELOAD, SET,
// SHOW). Render and WriteFileAtomic produce the [databases] include file that
// the agent owns. Router combines them into per-database sequences that carry
// a fencing epoch: Fence, Expose, Switch, and Tune for PgBouncer's retry
// timers. Rationale and measured behaviour of PgBouncer 1.18 are in
// DESIGN.md in this directory.
//
// Agent is the `pgquorum bouncer` agent: per cluster it watches the
// quorum's state, heartbeats with the newest epoch it has fenced for, and
// drives the Router (fence before acknowledging, expose only once the quorum
// exposed the primary, pause on lost contact). The package imports proto and
// fsm (for ApplyEvent) but not the server, RPC or pgnode packages; member
// clients come from a Dial function.
package bouncer
