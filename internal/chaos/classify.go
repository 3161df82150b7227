package chaos

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// notAssigned are PgBouncer's errors for a query it never sent to a
// server: it found no server connection to run it on.
var notAssigned = []string{
	"server login has been failing",
	"query_wait_timeout",
	"pgbouncer cannot connect to server",
	"no more connections allowed",
}

// classify turns an attempt's result into an outcome. Only a clean
// success is OK. A failure is definite only when the request was never
// sent, or PostgreSQL refused the statement with an ERROR that cannot
// follow a commit, or PgBouncer had no server for it; lost connections, timeouts, FATALs, PgBouncer's
// connection errors and a "committed locally" warning are unknown.
func classify(err error, committedLocally bool) (Outcome, string) {
	if err == nil {
		if committedLocally {
			return Unknown, "committed locally (sync wait cancelled)"
		}
		return OK, ""
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return Fail, "no row"
	}
	// pgx marks "conn closed" safe to retry even when it comes from
	// reading the result of a query it did send (the socket died under
	// it, e.g. PgBouncer killed: seed 7119058605134430076, an id reported
	// failed that had committed). Clients here never reuse a connection
	// after an error, so "conn closed" always means mid-query.
	if pgconn.SafeToRetry(err) && !errors.Is(err, pgconn.ErrConnClosed) {
		return Fail, "not sent: " + short(err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !committedLocally {
		for _, m := range notAssigned {
			if strings.HasPrefix(pgErr.Message, m) {
				return Fail, "not sent: " + pgErr.Message
			}
		}
	}
	if errors.As(err, &pgErr) && pgErr.Severity == "ERROR" && !committedLocally {
		switch pgErr.Code[:2] {
		case "08", "57", "58", "XX", "53":
		default:
			return Fail, pgErr.Code + " " + pgErr.Message
		}
	}
	return Unknown, short(err)
}

// short is an error's text, cut to one line of reasonable length.
func short(err error) string {
	s := strings.ReplaceAll(err.Error(), "\n", " ")
	if len(s) > 160 {
		s = s[:160]
	}
	return s
}
