package fsm

import "errors"

// Errors returned by Apply for commands that the state refuses. They are
// deterministic: every replica refuses the same command the same way.
var (
	ErrUnknownCommand     = errors.New("fsm: unknown command type")
	ErrBadCommand         = errors.New("fsm: malformed command")
	ErrAlreadyInitialized = errors.New("fsm: cluster already initialized")
	ErrNotInitialized     = errors.New("fsm: cluster not initialized")
	ErrMemberNotFound     = errors.New("fsm: member not found")
	ErrMemberRemoved      = errors.New("fsm: member was removed by an operator")
	ErrRemovePrimary      = errors.New("fsm: cannot remove the current primary")
	ErrConfigConflict     = errors.New("fsm: dynamic config changed since it was read")
	ErrStaleEpoch         = errors.New("fsm: stale epoch")
	ErrNotPrimary         = errors.New("fsm: member is not the primary")
	ErrNotEligible        = errors.New("fsm: member cannot be primary")
	ErrSystemIDMismatch   = errors.New("fsm: PostgreSQL system identifier differs from the cluster's")
	ErrBadSnapshot        = errors.New("fsm: unreadable snapshot")
)

// ErrResync ends a watch subscription that fell behind or whose state was
// replaced by a snapshot restore: the subscriber must start over from a
// fresh snapshot.
var ErrResync = errors.New("fsm: watcher must resync")
