package pgnode

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Diverged reports whether this running standby replayed WAL of its
// timeline past the point where up's timeline forked off it. That happens
// to an asynchronous standby that was ahead of the synchronous one when
// the latter was promoted: PostgreSQL then retries for ever ("new timeline
// N forked off current database system timeline M before current recovery
// point") and only pg_rewind brings it back. It reads up's timeline
// history as the rewind role (which may read files, for pg_rewind) and
// compares it with the local replay position; false when it cannot tell.
func (n *Node) Diverged(ctx context.Context, up Upstream) (bool, error) {
	var localTLI uint32
	var replay LSN
	var streaming bool
	err := n.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		// The timeline being replayed is that of the newest WAL segment:
		// the last checkpoint's can be older (a rewound standby has not
		// had a restartpoint on its new timeline yet).
		var rec bool
		var lsn *string
		var tli *int32
		if err := c.QueryRow(ctx, `SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,
			(SELECT ('x' || substr(name, 1, 8))::bit(32)::int FROM pg_ls_waldir()
			  WHERE name ~ '^[0-9A-F]{24}$' ORDER BY substr(name, 9) DESC, name DESC LIMIT 1),
			EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')`).Scan(&rec, &lsn, &tli, &streaming); err != nil {
			return err
		}
		if !rec {
			return ErrNotStandby
		}
		replay = parseLSNPtr(lsn)
		if tli != nil {
			localTLI = uint32(*tli)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("diverged %s: %w", n.cfg.DataDir, err)
	}
	if streaming || localTLI == 0 {
		return false, nil // following, or nothing to compare
	}
	conn, err := n.connectTo(ctx, up.Host, up.Port, n.cfg.Rewind)
	if err != nil {
		return false, fmt.Errorf("diverged %s: %w", n.cfg.DataDir, err)
	}
	defer closeConn(conn)
	var wal string
	if err := conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_current_wal_lsn())").Scan(&wal); err != nil {
		return false, fmt.Errorf("diverged %s: timeline of %s: %w", n.cfg.DataDir, up, err)
	}
	upTLI, err := strconv.ParseUint(wal[:min(8, len(wal))], 16, 32)
	if err != nil || uint32(upTLI) <= localTLI {
		return false, nil
	}
	var history []byte
	if err := conn.QueryRow(ctx, "SELECT pg_read_binary_file($1)", fmt.Sprintf("pg_wal/%08X.history", upTLI)).Scan(&history); err != nil {
		return false, fmt.Errorf("diverged %s: timeline history of %s: %w", n.cfg.DataDir, up, err)
	}
	fork, ok := forkPoint(string(history), localTLI)
	return ok && replay > fork, nil
}

// forkPoint finds, in a timeline history file, where timeline tli ended
// (the switch point of the line whose parent is tli).
func forkPoint(history string, tli uint32) (LSN, bool) {
	sc := bufio.NewScanner(strings.NewReader(history))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		parent, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil || uint32(parent) != tli {
			continue
		}
		if lsn, err := ParseLSN(f[1]); err == nil {
			return lsn, true
		}
	}
	return 0, false
}
