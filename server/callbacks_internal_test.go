package server

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCallbacks_HangingScriptKilledNextOneRuns: fire never blocks; a
// script that hangs is killed after the timeout and the next callback
// still runs, with Patroni's arguments.
func TestCallbacks_HangingScriptKilledNextOneRuns(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	calls := filepath.Join(dir, "calls")
	r := newCallbackRunner(Callbacks{
		OnStop:       script("hang", "sleep 600"),
		OnRoleChange: script("record", `echo "$1 $2 $3" >> `+calls),
		OnReload:     script("fail", "echo boom; exit 3"),
		Timeout:      500 * time.Millisecond,
	}, "main", slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	began := time.Now()
	r.fire(cbStop, "primary")
	r.fire(cbReload, "primary")
	r.fire(cbStart, "primary") // not configured: nothing runs
	r.fire(cbRoleChange, "replica")
	if d := time.Since(began); d > 100*time.Millisecond {
		t.Fatalf("fire blocked for %v", d)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(calls)
		if got := strings.TrimSpace(string(b)); got != "" {
			if got != "on_role_change replica main" {
				t.Fatalf("callback arguments %q, want %q", got, "on_role_change replica main")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the callback after a hanging one never ran")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := time.Since(began); d < 500*time.Millisecond || d > 5*time.Second {
		t.Errorf("the hanging script was killed after %v, want about its 500ms timeout", d)
	}
}
