package pgnode

import "errors"

// Sentinel errors returned (wrapped with %w and the path or name concerned)
// by pgnode. Test for them with errors.Is.
var (
	// ErrInvalidConfig reports a Config that fails Validate.
	ErrInvalidConfig = errors.New("pgnode: invalid config")
	// ErrNotInitialized reports a data directory without a PostgreSQL cluster.
	ErrNotInitialized = errors.New("pgnode: data directory not initialized")
	// ErrAlreadyInitialized reports a data directory that already holds a cluster
	// where an empty one was required (Bootstrap, CloneFrom).
	ErrAlreadyInitialized = errors.New("pgnode: data directory already initialized")
	// ErrDataDirNotEmpty reports a data directory with foreign content.
	ErrDataDirNotEmpty = errors.New("pgnode: data directory not empty")
	// ErrForeignDataDir reports a data directory whose system identifier is
	// not the one the cluster expects.
	ErrForeignDataDir = errors.New("pgnode: data directory belongs to another cluster")
	// ErrNotRunning reports that no postmaster runs for the data directory.
	ErrNotRunning = errors.New("pgnode: postgres is not running")
	// ErrRunning reports an operation that needs a stopped server.
	ErrRunning = errors.New("pgnode: postgres is running")
	// ErrRunningPrimary reports an operation refused because the server is a
	// running primary (for example Reinit).
	ErrRunningPrimary = errors.New("pgnode: postgres is running as primary")
	// ErrRoleMismatch reports a running server whose role (primary or standby)
	// differs from the one requested; use Promote or Demote to change it.
	ErrRoleMismatch = errors.New("pgnode: running server has a different role")
	// ErrNotStandby reports an operation that needs a server in recovery.
	ErrNotStandby = errors.New("pgnode: server is not a standby")
	// ErrNotPrimary reports an operation that needs a server out of recovery.
	ErrNotPrimary = errors.New("pgnode: server is not a primary")
	// ErrSourceInRecovery reports a rewind source that has not finished its
	// promotion: rewinding against it now would find "no rewind required"
	// on the old timeline. Retry later; nothing was changed.
	ErrSourceInRecovery = errors.New("pgnode: rewind source is still in recovery")
	// ErrStartFailed reports a postmaster that exited or did not become ready
	// in time; the error text carries the tail of the server log.
	ErrStartFailed = errors.New("pgnode: postgres failed to start")
	// ErrStopTimeout reports a postmaster that did not exit in time even after
	// an immediate shutdown and SIGKILL.
	ErrStopTimeout = errors.New("pgnode: postgres did not stop in time")
	// ErrForeignProcess reports a postmaster.pid whose PID belongs to a
	// process that is not this data directory's postmaster.
	ErrForeignProcess = errors.New("pgnode: postmaster.pid names a foreign process")
	// ErrCommandFailed reports a PostgreSQL tool (initdb, pg_basebackup,
	// pg_rewind, ...) or the custom replica command exiting with an error.
	ErrCommandFailed = errors.New("pgnode: command failed")
	// ErrInvalidParameter reports a parameter the agent manages itself, or a
	// name or value PostgreSQL rejects.
	ErrInvalidParameter = errors.New("pgnode: invalid parameter")
	// ErrInvalidSlotName reports a replication slot name that is not valid or
	// does not carry the managed prefix.
	ErrInvalidSlotName = errors.New("pgnode: invalid replication slot name")
	// ErrSettingNotApplied reports a reload after which the server still shows
	// an old value.
	ErrSettingNotApplied = errors.New("pgnode: setting not applied")
	// ErrPromoteFailed reports pg_promote returning false or timing out.
	ErrPromoteFailed = errors.New("pgnode: promotion failed")
	// ErrWriteProbe reports a write probe that failed or timed out.
	ErrWriteProbe = errors.New("pgnode: write probe failed")
	// ErrStopping reports a local connection not attempted because this
	// Node is stopping the server.
	ErrStopping = errors.New("pgnode: postgres is being stopped")
)
