package server

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWriteHealth(t *testing.T) {
	const grace = 2 * time.Second
	t0 := time.Unix(1000, 0)
	var w writeHealth
	if _, stuck := w.stalled(t0, grace); stuck {
		t.Fatal("stalled before any probe")
	}
	// A probe in flight counts from its start.
	w.begin(t0)
	if _, stuck := w.stalled(t0.Add(grace), grace); stuck {
		t.Fatal("stalled at exactly the grace")
	}
	if since, stuck := w.stalled(t0.Add(grace+time.Millisecond), grace); !stuck || !since.Equal(t0) {
		t.Fatalf("in flight past the grace: %v %v, want stalled since t0", since, stuck)
	}
	// It timed out: stalled from its start until a probe succeeds, even
	// while the next one is in flight.
	w.end(t0, context.DeadlineExceeded, true)
	w.begin(t0.Add(3 * time.Second))
	if since, stuck := w.stalled(t0.Add(3*time.Second), grace); !stuck || !since.Equal(t0) {
		t.Fatalf("after a timeout: %v %v, want stalled since t0", since, stuck)
	}
	w.end(t0.Add(3*time.Second), nil, false)
	if _, stuck := w.stalled(t0.Add(4*time.Second), grace); stuck {
		t.Fatal("stalled after a probe succeeded")
	}
	// Other failures (PostgreSQL down, restarting in place, in recovery)
	// are not a stall: the primary keeps its lease for those.
	w.begin(t0.Add(5 * time.Second))
	w.end(t0.Add(5*time.Second), errors.New("connection refused"), false)
	if _, stuck := w.stalled(t0.Add(10*time.Second), grace); stuck {
		t.Fatal("a refused connection counted as a stalled write")
	}
	// But they do not end a stall either: the fence stops PostgreSQL,
	// and the probe that then fails must not give the lease back.
	w.begin(t0.Add(11 * time.Second))
	w.end(t0.Add(11*time.Second), context.DeadlineExceeded, true)
	w.begin(t0.Add(14 * time.Second))
	w.end(t0.Add(14*time.Second), errors.New("connection refused"), false)
	if since, stuck := w.stalled(t0.Add(15*time.Second), grace); !stuck || !since.Equal(t0.Add(11*time.Second)) {
		t.Fatalf("a failed probe after a timeout ended the stall: %v %v", since, stuck)
	}
	w.reset()
	if _, stuck := w.stalled(t0.Add(20*time.Second), grace); stuck {
		t.Fatal("stalled after reset (a new epoch)")
	}
}
