// Package fsm holds pgquorum's replicated cluster state: the commands that
// change it, the pure Apply that executes them, versioned snapshots, and the
// watch hub that tells subscribers about every change.
//
// Apply is deterministic: it reads only the log entry and the current state.
// Times, UUIDs and every other non-deterministic input are stamped into a
// command by the leader before it is proposed (DESIGN.md invariant 6).
package fsm
