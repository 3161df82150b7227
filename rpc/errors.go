package rpc

import (
	"context"
	"errors"

	"github.com/pgquorum/pgquorum/fsm"
	"github.com/pgquorum/pgquorum/server"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// codeOf maps an error of the server or FSM to a gRPC code.
func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, server.ErrNotLeader), errors.Is(err, server.ErrShutdown):
		return codes.Unavailable
	case errors.Is(err, server.ErrInvalid), errors.Is(err, fsm.ErrBadCommand):
		return codes.InvalidArgument
	case errors.Is(err, server.ErrNotFound), errors.Is(err, fsm.ErrMemberNotFound):
		return codes.NotFound
	case errors.Is(err, fsm.ErrConfigConflict), errors.Is(err, fsm.ErrStaleEpoch):
		return codes.Aborted
	case errors.Is(err, server.ErrQuorumRisk), errors.Is(err, server.ErrPrecondition),
		errors.Is(err, server.ErrWrongCluster), errors.Is(err, fsm.ErrRemovePrimary),
		errors.Is(err, fsm.ErrNotEligible), errors.Is(err, fsm.ErrNotPrimary),
		errors.Is(err, fsm.ErrSystemIDMismatch), errors.Is(err, fsm.ErrNotInitialized),
		errors.Is(err, fsm.ErrAlreadyInitialized), errors.Is(err, fsm.ErrMemberRemoved):
		return codes.FailedPrecondition
	}
	return codes.Internal
}

// toStatus turns err into a gRPC status error carrying the sentinel's
// reason, so remote callers can use errors.Is (see server.FromStatus).
// Errors that already are statuses pass through.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	st := status.New(codeOf(err), err.Error())
	if reason := server.Reason(err); reason != "" {
		if withInfo, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: server.ErrorDomain}); derr == nil {
			st = withInfo
		}
	}
	return st.Err()
}
