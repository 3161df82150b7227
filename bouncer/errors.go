package bouncer

import (
	"errors"
	"fmt"
)

// Sentinel errors. Test for them with errors.Is.
var (
	// ErrStaleEpoch: a request carried an epoch older than the newest the
	// Router has seen for that database; it was ignored.
	ErrStaleEpoch = errors.New("stale epoch")
	// ErrNotFenced: Expose at a new epoch for a database that is still exposed
	// at an older one; fence it first.
	ErrNotFenced = errors.New("database not fenced at this epoch")
	// ErrInvalidRoute: a route or database name failed validation.
	ErrInvalidRoute = errors.New("invalid route")
	// ErrUnknownDatabase: PgBouncer does not know the database.
	ErrUnknownDatabase = errors.New("unknown database")
	// ErrUnsupported: the running PgBouncer version lacks the feature.
	ErrUnsupported = errors.New("not supported by this PgBouncer version")
	// ErrInvalidSetting: a SET key or value was rejected before sending.
	ErrInvalidSetting = errors.New("invalid setting")
	// ErrAdminClosed: the Admin was closed.
	ErrAdminClosed = errors.New("admin console closed")
	// ErrWrongCluster: a configured endpoint serves another cluster.
	ErrWrongCluster = errors.New("member belongs to another cluster")

	// errLagging ends a watch stream that stays behind the leader's epoch.
	errLagging = errors.New("watch lags behind the leader")
	// errToLeader ends a watch that moves to the leader's endpoint.
	errToLeader = errors.New("watch moves to the leader")
)

// StaleEpochError reports an ignored request. It matches ErrStaleEpoch.
type StaleEpochError struct {
	DB     string // PgBouncer database name
	Op     string // "fence", "hold" or "expose"
	Epoch  uint64 // epoch of the ignored request
	Newest uint64 // newest epoch seen for DB
}

func (e *StaleEpochError) Error() string {
	return fmt.Sprintf("bouncer: %s %q at epoch %d ignored: newest seen is %d", e.Op, e.DB, e.Epoch, e.Newest)
}

// Is makes errors.Is(err, ErrStaleEpoch) true.
func (e *StaleEpochError) Is(target error) bool { return target == ErrStaleEpoch }

// FieldError names the database and field of a rejected route value. It
// matches ErrInvalidRoute.
type FieldError struct {
	DB     string // database name as given
	Field  string // "name", "host", "port", "dbname", "user", "pool_mode", ...
	Value  string // offending value as given
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("bouncer: database %q: invalid %s %q: %s", e.DB, e.Field, e.Value, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidRoute) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidRoute }
