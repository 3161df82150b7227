package server

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the ErrorInfo domain of pgquorum's gRPC errors.
const ErrorDomain = "pgquorum"

// fromStatus turns a gRPC error from another node back into an error that
// matches our sentinels (see Reason).
func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == ErrorDomain {
			return &RemoteError{Reason: info.Reason, Msg: st.Message()}
		}
	}
	return err
}

// FromStatus is fromStatus for other packages (the ctl client).
func FromStatus(err error) error { return fromStatus(err) }
