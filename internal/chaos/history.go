package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

// Outcome is what a client knows about one attempt.
type Outcome string

// Outcomes. Unknown covers every attempt that may or may not have taken
// effect: a timeout, a lost connection, a "committed locally" warning.
// Only OK counts as acknowledged.
const (
	OK      Outcome = "ok"
	Fail    Outcome = "fail"
	Unknown Outcome = "unknown"
)

// Kinds of operations in a history.
const (
	KindInsert = "insert" // the id workload: insert one unique id
	KindWrite  = "write"  // the register workload: set key to value
	KindRead   = "read"   // the register workload: read key
)

// Op is one attempt of one client, a line of the history. Call and Return
// are on the campaign's monotonic clock (time since its start).
type Op struct {
	Process int           `json:"p"`
	Kind    string        `json:"kind"`
	Key     int           `json:"key,omitempty"`
	Value   int64         `json:"value"`
	Call    time.Duration `json:"call"`
	Return  time.Duration `json:"ret"`
	Outcome Outcome       `json:"outcome"`
	// Server is inet_server_addr() of the PostgreSQL that answered and
	// Timeline the timeline it wrote on, when the attempt succeeded.
	Server   string `json:"server,omitempty"`
	Timeline uint32 `json:"tl,omitempty"`
	Err      string `json:"err,omitempty"`
}

// String is the op as a history excerpt line.
func (o Op) String() string {
	s := fmt.Sprintf("%9.3fs..%9.3fs p%-2d %-6s", o.Call.Seconds(), o.Return.Seconds(), o.Process, o.Kind)
	if o.Kind != KindInsert {
		s += fmt.Sprintf(" k%d", o.Key)
	}
	s += fmt.Sprintf(" %-8d %-7s", o.Value, o.Outcome)
	if o.Server != "" {
		s += fmt.Sprintf(" %s tl%d", o.Server, o.Timeline)
	}
	if o.Err != "" {
		s += " " + o.Err
	}
	return s
}

// History collects the ops of a campaign in memory and appends each as a
// JSON line to a file as it completes, so a crashed run keeps its history.
type History struct {
	start time.Time

	mu  sync.Mutex
	ops []Op
	f   *os.File
	w   *bufio.Writer
}

// NewHistory starts the campaign clock and, when path is not empty, the
// history file.
func NewHistory(path string) (*History, error) {
	h := &History{start: time.Now()}
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		h.f, h.w = f, bufio.NewWriter(f)
	}
	return h, nil
}

// Now is the time since the campaign started (monotonic).
func (h *History) Now() time.Duration { return time.Since(h.start) }

// At converts a campaign time to a wall-clock time (for log correlation).
func (h *History) At(d time.Duration) time.Time { return h.start.Add(d) }

// Since converts a wall-clock time (a log line's, the leader's) to the
// campaign clock.
func (h *History) Since(t time.Time) time.Duration { return t.Sub(h.start) }

// AckReturns returns the return times, in order, of the acknowledged
// inserts that returned at or after from.
func (h *History) AckReturns(from time.Duration) []time.Duration {
	h.mu.Lock()
	var out []time.Duration
	// Ops are appended as they return, give or take a goroutine switch:
	// scan back from the newest to a second before from.
	for i := len(h.ops) - 1; i >= 0; i-- {
		o := h.ops[i]
		if o.Return < from-time.Second {
			break
		}
		if o.Kind == KindInsert && o.Outcome == OK && o.Return >= from {
			out = append(out, o.Return)
		}
	}
	h.mu.Unlock()
	slices.Sort(out)
	return out
}

// Add records a completed attempt.
func (h *History) Add(op Op) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
	if h.w != nil {
		b, _ := json.Marshal(op)
		_, _ = h.w.Write(append(b, '\n'))
	}
}

// Ops returns a copy of the ops recorded so far.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// Close flushes and closes the history file.
func (h *History) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.f == nil {
		return nil
	}
	err := h.w.Flush()
	if cerr := h.f.Close(); err == nil {
		err = cerr
	}
	h.f = nil
	return err
}

// LoadHistory reads a history file written by History.
func LoadHistory(path string) ([]Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ops []Op
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		var o Op
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			return ops, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		ops = append(ops, o)
	}
	return ops, sc.Err()
}
