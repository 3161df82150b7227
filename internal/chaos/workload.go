//go:build chaos

package chaos

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// opTimeout bounds one attempt on the client side: statement_timeout
// does not end a wait for the synchronous standby (FACTS.md).
const opTimeout = 5 * time.Second

// Register keys the register workload uses (rows created with v = 0).
const registerKeys = 3

// Schema is what the workloads need, created on the first primary.
const Schema = `
CREATE TABLE chaos_ids (id bigint NOT NULL);
CREATE INDEX chaos_ids_id ON chaos_ids (id);
CREATE TABLE chaos_reg (k int PRIMARY KEY, v bigint NOT NULL);
INSERT INTO chaos_reg SELECT k, 0 FROM generate_series(0, 2) k;
CREATE TABLE chaos_probe (at timestamptz);
`

// timelineSQL is the timeline the primary writes WAL on.
const timelineSQL = `('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint`

// Workload runs the clients: inserters add unique increasing ids, one per
// transaction; register clients write unique values to and read a few
// keys. Every attempt goes through PgBouncer and into the history.
type Workload struct {
	dsn    string
	dial   pgconn.DialFunc
	h      *History
	nextID atomic.Int64
	nextV  atomic.Int64
	wg     sync.WaitGroup
}

// StartWorkload starts inserters and registers clients until ctx ends.
// dial, when not nil, opens their connections (from the client
// namespace).
func StartWorkload(ctx context.Context, dsn string, dial pgconn.DialFunc, h *History, inserters, registers int, seed uint64) *Workload {
	w := &Workload{dsn: dsn, dial: dial, h: h}
	for p := range inserters {
		w.wg.Go(func() { w.client(ctx, p, nil) })
	}
	for p := range registers {
		rng := rand.New(rand.NewPCG(seed, uint64(p)))
		w.wg.Go(func() { w.client(ctx, inserters+p, rng) })
	}
	return w
}

// Wait waits for every client to stop.
func (w *Workload) Wait() { w.wg.Wait() }

// session is one client's connection and what the server told it.
type session struct {
	conn             *pgx.Conn
	committedLocally atomic.Bool
}

func (s *session) close() {
	if s.conn != nil {
		_ = s.conn.Close(context.Background())
		s.conn = nil
	}
}

// client runs one client: an inserter when rng is nil, else a register
// client.
func (w *Workload) client(ctx context.Context, p int, rng *rand.Rand) {
	s := &session{}
	defer s.close()
	pause := 20 * time.Millisecond
	if rng != nil {
		pause = 40 * time.Millisecond
	}
	for ctx.Err() == nil {
		op := Op{Process: p, Kind: KindInsert}
		switch {
		case rng == nil:
			op.Value = w.nextID.Add(1)
		case rng.IntN(2) == 0:
			op.Kind, op.Key, op.Value = KindWrite, rng.IntN(registerKeys), w.nextV.Add(1)
		default:
			op.Kind, op.Key = KindRead, rng.IntN(registerKeys)
		}
		op.Call = w.h.Now()
		err := w.attempt(ctx, s, &op)
		op.Return = w.h.Now()
		if ctx.Err() != nil && err != nil {
			// Stopped mid-attempt: the outcome is unknown, and for a
			// write it must be recorded as such.
			op.Outcome, op.Err = Unknown, "workload stopped"
			if op.Kind != KindRead {
				w.h.Add(op)
			}
			return
		}
		w.h.Add(op)
		if err != nil {
			s.close()
		}
		time.Sleep(pause)
	}
}

// attempt runs one op and classifies it; it returns the error, if any.
func (w *Workload) attempt(ctx context.Context, s *session, op *Op) error {
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if s.conn == nil {
		cfg, err := pgx.ParseConfig(w.dsn)
		if err != nil {
			op.Outcome, op.Err = Fail, err.Error()
			return err
		}
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
		if w.dial != nil {
			cfg.DialFunc = w.dial
		}
		cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			if strings.Contains(n.Message+" "+n.Detail, "committed locally") {
				s.committedLocally.Store(true)
			}
		}
		conn, err := pgx.ConnectConfig(octx, cfg)
		if err != nil {
			// Nothing was sent: a definite failure.
			op.Outcome, op.Err = Fail, "connect: "+short(err)
			return err
		}
		s.conn = conn
	}
	s.committedLocally.Store(false)
	var server string
	var tl int64
	var err error
	switch op.Kind {
	case KindInsert:
		err = s.conn.QueryRow(octx, "INSERT INTO chaos_ids (id) VALUES ($1) RETURNING inet_server_addr()::text, "+timelineSQL, op.Value).Scan(&server, &tl)
	case KindWrite:
		err = s.conn.QueryRow(octx, "UPDATE chaos_reg SET v = $2 WHERE k = $1 RETURNING inet_server_addr()::text, "+timelineSQL, op.Key, op.Value).Scan(&server, &tl)
	case KindRead:
		err = s.conn.QueryRow(octx, "SELECT v, inet_server_addr()::text FROM chaos_reg WHERE k = $1", op.Key).Scan(&op.Value, &server)
	}
	op.Server, op.Timeline = hostOf(server), uint32(tl)
	op.Outcome, op.Err = classify(err, s.committedLocally.Load())
	if err != nil {
		// Only a returned row names the server; a write that returned
		// one with the "committed locally" warning keeps it (unknown,
		// but it did commit there: the bouncer checker needs it).
		op.Server, op.Timeline = "", 0
	}
	return err
}
