package chaos

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestClassify(t *testing.T) {
	pgErr := func(sev, code, msg string) error { return &pgconn.PgError{Severity: sev, Code: code, Message: msg} }
	tests := []struct {
		name             string
		err              error
		committedLocally bool
		want             Outcome
	}{
		{"success", nil, false, OK},
		{"success with a cancelled sync wait", nil, true, Unknown},
		{"read-only standby", pgErr("ERROR", "25006", "cannot execute INSERT in a read-only transaction"), false, Fail},
		{"pgbouncer had no server", pgErr("FATAL", "08P01", "server login has been failing, try again later (server_login_retry)"), false, Fail},
		{"pgbouncer lost the server mid-query", pgErr("FATAL", "08P01", "server conn crashed?"), false, Unknown},
		{"backend terminated", pgErr("FATAL", "57P01", "terminating connection due to administrator command"), false, Unknown},
		{"postmaster died", pgErr("FATAL", "XX000", "terminating connection due to unexpected postmaster exit"), false, Unknown},
		{"error after a committed-locally warning", pgErr("ERROR", "25006", "x"), true, Unknown},
		{"timeout", fmt.Errorf("timeout: %w", context.DeadlineExceeded), false, Unknown},
		{"connection reset", errors.New("read tcp: connection reset by peer"), false, Unknown},
		{"not sent", retryable{errors.New("dial tcp: connection refused")}, false, Fail},
		// pgx's "conn closed" from reading a result claims SafeToRetry.
		{"conn closed mid-query", retryable{pgconn.ErrConnClosed}, false, Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, why := classify(tt.err, tt.committedLocally); got != tt.want {
				t.Errorf("classify(%v) = %s (%s), want %s", tt.err, got, why, tt.want)
			}
		})
	}
}

// retryable is an error pgx marks safe to retry, as its connLockError.
type retryable struct{ err error }

func (e retryable) Error() string     { return e.err.Error() }
func (e retryable) Unwrap() error     { return e.err }
func (e retryable) SafeToRetry() bool { return true }
