package pgnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// connect opens a connection to the local server through its Unix socket
// as the superuser.
func (n *Node) connect(ctx context.Context) (*pgx.Conn, error) {
	if n.stoppingNow() {
		return nil, fmt.Errorf("%w: %s", ErrStopping, n.cfg.DataDir)
	}
	return n.connectTo(ctx, n.cfg.SocketDir, n.cfg.Port, n.cfg.Superuser)
}

// stoppingNow reports a postmaster this Node asked to stop that has not
// exited yet. A connection attempt then only gets "the database system is
// shutting down", and the postmaster waits for that rejected backend
// before it exits: on a switchover, every probe in that window made the
// old primary's shutdown (and the write stall) longer.
func (n *Node) stoppingNow() bool {
	n.mu.Lock()
	p := n.proc
	stopping := p != nil && p.stopping
	n.mu.Unlock()
	return stopping && !p.exited()
}

// connectTo opens a connection to host:port (or a socket directory) with
// cr, bounded by ProbeTimeout.
func (n *Node) connectTo(ctx context.Context, host string, port int, cr Credentials) (*pgx.Conn, error) {
	secs := int(n.cfg.ProbeTimeout / time.Second)
	if secs < 1 {
		secs = 1
	}
	cc, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d dbname=postgres sslmode=disable connect_timeout=%d",
		quoteConninfo(host), port, secs))
	if err != nil {
		return nil, fmt.Errorf("connection config for %s:%d: %w", host, port, err)
	}
	cc.User = cr.Username
	cc.Password = cr.Password
	cc.RuntimeParams["application_name"] = "pgquorum"
	cctx, cancel := context.WithTimeout(ctx, n.cfg.ProbeTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect to %s port %d as %s: %w", host, port, cr.Username, err)
	}
	return conn, nil
}

// closeConn closes conn without letting a dead server block the caller.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// withConn runs f on a local connection bounded by ProbeTimeout: one kept
// from an earlier call, else a new one. A new connection costs a fork and
// a SCRAM handshake (tens of milliseconds on a busy host), and probes,
// reloads and promotion sit on the failover path and run every few
// hundred milliseconds on an idle node. A kept session is not pinged
// first (a round trip per call, as much as the probe itself): when it
// turns out to have died with its server (restarted since), f runs once
// more on a new connection, so f must be safe to repeat (every caller
// reads, or sets a state idempotently). f must not leave session state
// behind (SET, an open transaction); use withFreshConn for that.
func (n *Node) withConn(ctx context.Context, f func(context.Context, *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ProbeTimeout)
	defer cancel()
	conn, kept, err := n.acquire(ctx)
	if err != nil {
		return err
	}
	err = f(ctx, conn)
	if err != nil && kept && conn.IsClosed() && ctx.Err() == nil {
		closeConn(conn)
		if conn, err = n.connect(ctx); err != nil {
			n.release(nil, err)
			return err
		}
		err = f(ctx, conn)
	}
	n.release(conn, err)
	return err
}

// withFreshConn runs f on a new local connection that is closed after.
func (n *Node) withFreshConn(ctx context.Context, f func(context.Context, *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ProbeTimeout)
	defer cancel()
	conn, err := n.connect(ctx)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	return f(ctx, conn)
}

// maxIdle is how many local connections are kept between calls: the
// probe loop, a convergence round and the decider's fresh probe (or a
// promotion's polling) overlap, and with one kept connection the loser
// paid a new backend on exactly the switchover's path.
const maxIdle = 2

// keptWait bounds how long acquire waits for a kept connection that is in
// use before it opens another. A probe holds one for a millisecond or two;
// a new connection costs tens of milliseconds on a loaded host, and its
// backend as much again when it exits. Seen on the switchover's path: the
// old primary's step-down waited 80 ms for a third connection's login.
const keptWait = 50 * time.Millisecond

// acquire takes a kept local connection (kept reports which), else opens
// a new one: at once while fewer than maxIdle are in use, else after
// waiting up to keptWait for one to come back. Every successful acquire
// is paired with one release.
func (n *Node) acquire(ctx context.Context) (c *pgx.Conn, kept bool, err error) {
	deadline := time.Now().Add(keptWait)
	for {
		n.connMu.Lock()
		if n.freed == nil {
			n.freed = make(chan struct{}, 1)
		}
		freed := n.freed
		c = nil
		for c == nil && len(n.idle) > 0 {
			k := len(n.idle)
			c, n.idle = n.idle[k-1], n.idle[:k-1]
			if c.IsClosed() {
				c = nil
			}
		}
		if c != nil || n.busy < maxIdle || !time.Now().Before(deadline) {
			n.busy++
			n.connMu.Unlock()
			if c != nil {
				return c, true, nil
			}
			if c, err = n.connect(ctx); err != nil {
				n.release(nil, err)
			}
			return c, false, err
		}
		n.connMu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-freed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, false, ctx.Err()
		}
		t.Stop()
	}
}

// release keeps c for the next call when f succeeded and left the session
// clean; anything else is closed, so a connection that saw an error (a
// timeout can leave it mid-protocol) is never reused. c may be nil (its
// connect failed): the acquire is given back all the same.
func (n *Node) release(c *pgx.Conn, err error) {
	n.connMu.Lock()
	n.busy--
	if c != nil && err == nil && !c.IsClosed() && c.PgConn().TxStatus() == 'I' && len(n.idle) < maxIdle {
		n.idle, c = append(n.idle, c), nil
	}
	freed := n.freed
	n.connMu.Unlock()
	select {
	case freed <- struct{}{}:
	default:
	}
	if c != nil {
		closeConn(c)
	}
}

// dropIdle closes the kept local connections (the server is going away).
func (n *Node) dropIdle() {
	n.connMu.Lock()
	conns := append(n.idle, n.writeConn)
	n.idle, n.writeConn = nil, nil
	n.connMu.Unlock()
	for _, c := range conns {
		if c != nil {
			closeConn(c)
		}
	}
}

func (n *Node) ping(ctx context.Context) error {
	return n.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		var one int
		return c.QueryRow(ctx, "SELECT 1").Scan(&one)
	})
}

func (n *Node) inRecovery(ctx context.Context) (bool, error) {
	var r bool
	err := n.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&r)
	})
	return r, err
}

// reloadLocked signals a configuration reload and waits (ProbeTimeout)
// until new sessions see it, by pg_conf_load_time.
func (n *Node) reloadLocked(ctx context.Context) error {
	return n.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error { return n.reloadOn(ctx, c) })
}

// reloadOn signals a reload through c and waits until c's own session
// re-read the files (it does so before its next command), all on one
// connection: each new connection costs a SCRAM handshake and a fork,
// and reloads sit on the failover path.
func (n *Node) reloadOn(ctx context.Context, c *pgx.Conn) error {
	var before time.Time
	if err := c.QueryRow(ctx, "SELECT pg_conf_load_time()").Scan(&before); err != nil {
		return fmt.Errorf("reload %s: %w", n.cfg.DataDir, err)
	}
	if _, err := c.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("reload %s: %w", n.cfg.DataDir, err)
	}
	for {
		var after time.Time
		err := c.QueryRow(ctx, "SELECT pg_conf_load_time()").Scan(&after)
		if err == nil && after.After(before) {
			n.log.Info("configuration reloaded")
			return nil
		}
		if err != nil || ctx.Err() != nil {
			return fmt.Errorf("%w: reload of %s not observed (last error %v)", ErrSettingNotApplied, n.cfg.DataDir, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// ensureRoles creates or updates the superuser's password and the
// replication and rewind roles, and grants the rewind role the functions
// pg_rewind calls (and pg_checkpoint, so pgnode can checkpoint a source).
func (n *Node) ensureRoles(ctx context.Context) error {
	return n.withFreshConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		// Passwords go out as SCRAM verifiers (passwordLiteral); the
		// session settings keep a clear-text fallback out of the server log.
		// synchronous_commit = local: in strict mode with no synchronous
		// standby yet, the commits would wait for good (and a standby
		// promoted later gets its own EnsureRoles).
		for _, s := range []string{"SET log_statement = 'none'", "SET log_min_duration_statement = -1", "SET log_min_error_statement = 'panic'",
			"SET synchronous_commit = 'local'"} {
			if _, err := c.Exec(ctx, s); err != nil {
				return err
			}
		}
		suPW, err := passwordLiteral(n.cfg.Superuser.Password)
		if err != nil {
			return err
		}
		stmts := []string{
			fmt.Sprintf("ALTER ROLE %s WITH PASSWORD %s", pgx.Identifier{n.cfg.Superuser.Username}.Sanitize(), suPW),
		}
		for _, r := range []struct {
			cr    Credentials
			attrs string
		}{
			{n.cfg.Replication, "LOGIN REPLICATION"},
			{n.cfg.Rewind, "LOGIN"},
		} {
			var exists bool
			if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", r.cr.Username).Scan(&exists); err != nil {
				return err
			}
			verb := "CREATE"
			if exists {
				verb = "ALTER"
			}
			pw, err := passwordLiteral(r.cr.Password)
			if err != nil {
				return err
			}
			stmts = append(stmts, fmt.Sprintf("%s ROLE %s WITH %s PASSWORD %s", verb,
				pgx.Identifier{r.cr.Username}.Sanitize(), r.attrs, pw))
		}
		rw := pgx.Identifier{n.cfg.Rewind.Username}.Sanitize()
		for _, f := range []string{
			"pg_catalog.pg_ls_dir(text, boolean, boolean)",
			"pg_catalog.pg_stat_file(text, boolean)",
			"pg_catalog.pg_read_binary_file(text)",
			"pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
		} {
			stmts = append(stmts, fmt.Sprintf("GRANT EXECUTE ON FUNCTION %s TO %s", f, rw))
		}
		stmts = append(stmts, "GRANT pg_checkpoint TO "+rw)
		for _, s := range stmts {
			if _, err := c.Exec(ctx, s); err != nil {
				return fmt.Errorf("create roles on %s: %w", n.cfg.DataDir, err)
			}
		}
		n.log.Info("roles ensured", "replication", n.cfg.Replication.Username, "rewind", n.cfg.Rewind.Username)
		return nil
	})
}

// ReplicaStatus is one row of pg_stat_replication.
type ReplicaStatus struct {
	ApplicationName string
	ClientAddr      string
	State           string
	SentLSN         LSN
	WriteLSN        LSN
	FlushLSN        LSN
	ReplayLSN       LSN
	// SyncState is "async", "potential", "sync" or "quorum".
	SyncState    string
	SyncPriority int
	// PID is the walsender's process ID.
	PID int32
	// ReplyTime is reply_time: when the standby sent its last reply, by
	// the standby's clock (zero before the first reply).
	ReplyTime time.Time
	// ReplyAge is how long ago the standby sent its last reply, on the
	// agent's monotonic clock: counted from the probe that first saw
	// ReplyTime, less the part of the interval since the previous probe
	// that the wall clocks account for (see replyTracker for why not
	// now() - reply_time). A standby alive replies at least every
	// ReceiverStatusInterval, so an age well past it means the standby
	// stopped replying although State may still say "streaming": a
	// connection that died silently stays "streaming" until
	// wal_sender_timeout.
	ReplyAge time.Duration
}

// Status is what Probe saw of the running server.
type Status struct {
	// Up reports that the server answered.
	Up bool
	// InRecovery reports a standby (or a server still recovering).
	InRecovery bool
	// Timeline is the primary's current timeline, or for a standby the
	// timeline it receives (else its last restartpoint's).
	Timeline uint32
	// CurrentLSN is pg_current_wal_lsn() on a primary.
	CurrentLSN LSN
	// ReceiveLSN and ReplayLSN are a standby's received and replayed WAL.
	ReceiveLSN LSN
	ReplayLSN  LSN
	// LastReplayTime is pg_last_xact_replay_timestamp() on a standby.
	LastReplayTime time.Time
	// WALReceiver is pg_stat_wal_receiver.status ("streaming", ...) or "".
	WALReceiver string
	// UpstreamHost and UpstreamPort are the WAL receiver's sender.
	UpstreamHost string
	UpstreamPort int
	// Replicas are the standbys streaming from this server.
	Replicas []ReplicaStatus
	// SynchronousStandbyNames is the active synchronous_standby_names.
	SynchronousStandbyNames string
	// PendingRestart lists parameters changed in the files that need a
	// restart to take effect.
	PendingRestart []string
	// PostmasterStartTime is pg_postmaster_start_time().
	PostmasterStartTime time.Time
	// ServerVersion is server_version_num, e.g. 150018.
	ServerVersion int
}

func parseLSNPtr(s *string) LSN {
	if s == nil {
		return 0
	}
	l, _ := ParseLSN(*s)
	return l
}

// Probe connects through the local socket (bounded by ProbeTimeout) and
// reports the server's role, timeline, WAL positions, standbys and pending
// restarts. If the server cannot be reached it returns a Status with Up
// false and the error. It only reads; a primary on a stalled disk passes
// it, so health checks of a primary also need WriteProbe.
func (n *Node) Probe(ctx context.Context) (Status, error) {
	var st Status
	err := n.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		var (
			curLSN, curWAL, recv, replay, rcvStatus, rcvHost *string
			replayTS                                         *time.Time
			rcvTLI, rcvPort, fallbackTLI                     *int32
			replicas                                         []byte
		)
		if err := c.QueryRow(ctx, probeSQL).Scan(&st.InRecovery, &st.PostmasterStartTime,
			&st.SynchronousStandbyNames, &st.ServerVersion, &curLSN, &curWAL, &recv, &replay, &replayTS,
			&rcvStatus, &rcvTLI, &rcvHost, &rcvPort, &fallbackTLI, &replicas, &st.PendingRestart); err != nil {
			return err
		}
		st.Up = true
		if !st.InRecovery {
			st.CurrentLSN = parseLSNPtr(curLSN)
			if curWAL != nil && len(*curWAL) >= 8 {
				if tli, err := strconv.ParseUint((*curWAL)[:8], 16, 32); err == nil {
					st.Timeline = uint32(tli)
				}
			}
		} else {
			st.ReceiveLSN, st.ReplayLSN = parseLSNPtr(recv), parseLSNPtr(replay)
			if replayTS != nil {
				st.LastReplayTime = *replayTS
			}
			if rcvStatus != nil {
				st.WALReceiver = *rcvStatus
			}
			if rcvTLI != nil && *rcvTLI > 0 {
				st.Timeline = uint32(*rcvTLI)
			}
			if rcvHost != nil {
				st.UpstreamHost = *rcvHost
			}
			if rcvPort != nil {
				st.UpstreamPort = int(*rcvPort)
			}
			if st.Timeline == 0 && fallbackTLI != nil {
				// No WAL receiver (its upstream just died, say): the
				// newest timeline history file in pg_wal names the
				// timeline recovery follows; the last checkpoint's may
				// still be an older one.
				st.Timeline = uint32(*fallbackTLI)
			}
		}
		reps, err := parseReplicas(replicas)
		if err != nil {
			return err
		}
		st.Replicas = reps
		n.replies.observe(st.Replicas, time.Now())
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("probe %s: %w", n.cfg.DataDir, err)
	}
	return st, nil
}

// probeSQL is the whole probe in one statement: a round trip costs more
// than the catalog reads, and every node probes every loop (twice on a
// primary), so an idle cluster's CPU is mostly this. Recovery is read once
// (a promotion finishing mid-statement must not mix a primary's and a
// standby's columns), and the primary-only and fallback columns are
// evaluated only when they apply (pg_walfile_name fails in recovery; the
// timeline fallback lists pg_wal).
const probeSQL = `WITH s AS MATERIALIZED (SELECT pg_is_in_recovery() AS rec)
SELECT s.rec, pg_postmaster_start_time(),
	current_setting('synchronous_standby_names'), current_setting('server_version_num')::int,
	CASE WHEN NOT s.rec THEN pg_current_wal_lsn()::text END,
	CASE WHEN NOT s.rec THEN pg_walfile_name(pg_current_wal_lsn()) END,
	pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp(),
	r.status, r.received_tli, r.sender_host, r.sender_port,
	CASE WHEN s.rec AND coalesce(r.received_tli, 0) = 0 THEN greatest(
		(SELECT timeline_id FROM pg_control_checkpoint()),
		(SELECT max(('x' || substr(name, 1, 8))::bit(32)::int) FROM pg_ls_waldir()
		  WHERE name ~ '^[0-9A-F]{8}\.history$')) END,
	(SELECT json_agg(json_build_object('app', coalesce(application_name, ''), 'addr', coalesce(client_addr::text, ''),
		'state', coalesce(state, ''), 'sent', sent_lsn::text, 'write', write_lsn::text, 'flush', flush_lsn::text,
		'replay', replay_lsn::text, 'sync', coalesce(sync_state, ''), 'prio', coalesce(sync_priority, 0), 'pid', pid,
		'reply_us', (extract(epoch FROM reply_time) * 1000000)::bigint) ORDER BY application_name)
	  FROM pg_stat_replication),
	(SELECT array_agg(name ORDER BY name) FROM pg_settings WHERE pending_restart)
FROM s LEFT JOIN pg_stat_wal_receiver r ON true`

// parseReplicas decodes probeSQL's pg_stat_replication column.
func parseReplicas(b []byte) ([]ReplicaStatus, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var rows []struct {
		App, Addr, State, Sync     string
		Sent, Write, Flush, Replay *string
		Prio                       int
		PID                        int32
		ReplyUS                    *int64 `json:"reply_us"`
	}
	if err := json.Unmarshal(b, &rows); err != nil {
		return nil, fmt.Errorf("pg_stat_replication: %w", err)
	}
	out := make([]ReplicaStatus, 0, len(rows))
	for _, r := range rows {
		rs := ReplicaStatus{ApplicationName: r.App, ClientAddr: r.Addr, State: r.State, SyncState: r.Sync,
			SyncPriority: r.Prio, PID: r.PID,
			SentLSN: parseLSNPtr(r.Sent), WriteLSN: parseLSNPtr(r.Write), FlushLSN: parseLSNPtr(r.Flush), ReplayLSN: parseLSNPtr(r.Replay)}
		if r.ReplyUS != nil {
			rs.ReplyTime = time.UnixMicro(*r.ReplyUS)
		}
		out = append(out, rs)
	}
	return out, nil
}

func pendingRestart(ctx context.Context, c *pgx.Conn) ([]string, error) {
	rows, err := c.Query(ctx, "SELECT name FROM pg_settings WHERE pending_restart ORDER BY name")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// WriteProbe commits a tiny transaction that writes and flushes WAL (a
// transactional logical message, no table needed), with
// synchronous_commit=local so it tests this server's disk and not its
// standbys. The timeout is enforced on the client side: a stalled disk
// hangs the commit, and statement_timeout would not end it. It fails with
// ErrWriteProbe (or ErrNotPrimary on a standby).
//
// Its connection is kept for the next call (a primary is probed every
// loop, and a new backend each time costs more than the probe): it is its
// own, not the shared idle one, because a stalled commit holds it until
// the timeout.
func (n *Node) WriteProbe(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	n.connMu.Lock()
	conn := n.writeConn
	n.writeConn = nil
	n.connMu.Unlock()
	if conn == nil || conn.IsClosed() {
		var err error
		if conn, err = n.connect(ctx); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrWriteProbe, n.cfg.DataDir, err)
		}
	}
	// One round trip (simple protocol, several statements): the agent
	// sends this every loop on the primary. A standby answers with
	// read_only_sql_transaction.
	_, err := conn.Exec(ctx, "BEGIN; SET LOCAL synchronous_commit = local; "+
		"DO $$BEGIN IF pg_is_in_recovery() THEN RAISE EXCEPTION 'in recovery' USING ERRCODE = 'read_only_sql_transaction'; END IF; "+
		"PERFORM pg_logical_emit_message(true, 'pgquorum', 'write-probe'); END$$; COMMIT")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "25006" {
		err = ErrNotPrimary
	}
	if err == nil {
		n.connMu.Lock()
		if n.writeConn == nil {
			n.writeConn, conn = conn, nil
		}
		n.connMu.Unlock()
	}
	if conn != nil {
		// Closed after any failure: it may sit in an aborted transaction.
		closeConn(conn)
	}
	if errors.Is(err, ErrNotPrimary) {
		return fmt.Errorf("write probe %s: %w", n.cfg.DataDir, err)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrWriteProbe, n.cfg.DataDir, err)
	}
	return nil
}
