package server

import (
	"errors"
	"fmt"

	"github.com/pgquorum/pgquorum/fsm"
)

// Sentinel errors of the server. Package rpc maps each to a gRPC code.
var (
	ErrNotLeader    = errors.New("not the raft leader")
	ErrInvalid      = errors.New("invalid argument")
	ErrNotFound     = errors.New("not found")
	ErrQuorumRisk   = errors.New("change would lose quorum")
	ErrWrongCluster = errors.New("belongs to another cluster")
	ErrShutdown     = errors.New("server is shutting down")
	ErrDataDir      = errors.New("data directory unusable")
	ErrPrecondition = errors.New("failed precondition")
	// ErrPaused: maintenance mode keeps the actuator from starting,
	// stopping, rewinding or cloning PostgreSQL on its own.
	ErrPaused = errors.New("paused (maintenance mode)")
)

// NotLeaderError says who leads, so a caller can forward. It matches
// ErrNotLeader with errors.Is.
type NotLeaderError struct {
	LeaderID       string
	LeaderGRPCAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "not the raft leader (no leader known)"
	}
	return fmt.Sprintf("not the raft leader (leader is %s at %s)", e.LeaderID, e.LeaderGRPCAddr)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// reasons name each sentinel on the wire (as a gRPC ErrorInfo reason), so
// a node that gets an error from another node can test it with errors.Is
// instead of matching strings.
var reasons = []struct {
	err    error
	reason string
}{
	{ErrNotLeader, "NOT_LEADER"},
	{ErrInvalid, "INVALID_ARGUMENT"},
	{ErrNotFound, "NOT_FOUND"},
	{ErrQuorumRisk, "QUORUM_RISK"},
	{ErrWrongCluster, "WRONG_CLUSTER"},
	{ErrShutdown, "SHUTDOWN"},
	{ErrDataDir, "DATA_DIR"},
	{ErrPrecondition, "FAILED_PRECONDITION"},
	{fsm.ErrMemberNotFound, "MEMBER_NOT_FOUND"},
	{fsm.ErrMemberRemoved, "MEMBER_REMOVED"},
	{fsm.ErrRemovePrimary, "REMOVE_PRIMARY"},
	{fsm.ErrConfigConflict, "CONFIG_CONFLICT"},
	{fsm.ErrStaleEpoch, "STALE_EPOCH"},
	{fsm.ErrNotPrimary, "NOT_PRIMARY"},
	{fsm.ErrNotEligible, "NOT_ELIGIBLE"},
	{fsm.ErrSystemIDMismatch, "SYSTEM_ID_MISMATCH"},
	{fsm.ErrNotInitialized, "NOT_INITIALIZED"},
	{fsm.ErrBadCommand, "BAD_COMMAND"},
}

// Reason returns the wire name of the sentinel that err wraps, or "".
func Reason(err error) string {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return ""
}

// ErrorForReason returns the sentinel with a wire name, or nil.
func ErrorForReason(reason string) error {
	for _, r := range reasons {
		if r.reason == reason {
			return r.err
		}
	}
	return nil
}

// RemoteError is an error returned by another node; it matches the
// sentinel named by its reason with errors.Is.
type RemoteError struct {
	Reason string
	Msg    string
}

func (e *RemoteError) Error() string { return e.Msg }

// Is matches the sentinel named by the reason.
func (e *RemoteError) Is(target error) bool {
	s := ErrorForReason(e.Reason)
	return s != nil && s == target
}
