package bouncer

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// TuneOptions are the PgBouncer timers that decide how fast a pool recovers
// after its primary moves. PgBouncer's defaults add seconds to every failover:
// after one failed login it refuses new clients of that pool for
// server_login_retry (15 s), even after a RELOAD to a new host.
type TuneOptions struct {
	// LoginRetry is server_login_retry (DefaultTune: 100 ms).
	LoginRetry time.Duration
	// ConnectTimeout is server_connect_timeout (DefaultTune: 2 s): how long a
	// connect to an unreachable host may hang.
	ConnectTimeout time.Duration
	// FastClose sets server_fast_close where the version has it, so paused
	// session-mode pools close servers as soon as their transaction ends.
	FastClose bool
}

// DefaultTune is what Router.Tune applies when given the zero TuneOptions.
var DefaultTune = TuneOptions{LoginRetry: 100 * time.Millisecond, ConnectTimeout: 2 * time.Second, FastClose: true}

// settings turns o into console SET pairs, in a fixed order.
func (o TuneOptions) settings() [][2]string {
	secs := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }
	var out [][2]string
	if o.LoginRetry > 0 {
		out = append(out, [2]string{"server_login_retry", secs(o.LoginRetry)})
	}
	if o.ConnectTimeout > 0 {
		out = append(out, [2]string{"server_connect_timeout", secs(o.ConnectTimeout)})
	}
	if o.FastClose {
		out = append(out, [2]string{"server_fast_close", "1"})
	}
	return out
}

// applyTune sets o on the console, skipping keys this PgBouncer does not
// have (SHOW CONFIG lists them). It returns the keys it skipped.
func applyTune(ctx context.Context, a *Admin, o TuneOptions, known map[string]string) (skipped []string, err error) {
	for _, kv := range o.settings() {
		if _, ok := known[kv[0]]; !ok {
			skipped = append(skipped, kv[0])
			continue
		}
		if err := a.Set(ctx, kv[0], kv[1]); err != nil {
			return skipped, fmt.Errorf("bouncer: tune %s: %w", kv[0], err)
		}
	}
	return skipped, nil
}
