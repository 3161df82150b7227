package chaos

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// TestRecheck checks a kept history again, without a cluster:
// CHAOS_HISTORY=<run dir>/history.jsonl go test -run TestRecheck -v ./internal/chaos
func TestRecheck(t *testing.T) {
	path := os.Getenv("CHAOS_HISTORY")
	if path == "" {
		t.Skip("CHAOS_HISTORY names a history.jsonl to check again")
	}
	ops, err := LoadHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	pr := CheckPrimaries(ops)
	for _, v := range pr.Violations() {
		t.Error(v)
	}
	// epochs.json, beside the history, holds the primary assignments and
	// the bouncer agent's acknowledgements.
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(path), "epochs.json")); err == nil {
		var e Epochs
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		br := CheckBouncerAcks(ops, e)
		t.Logf("bouncer: %d writes checked against %d acks, %d epochs", br.Checked, len(e.Acks), len(e.Assignments))
		for _, v := range br.Violations() {
			t.Error(v)
		}
	}
	start := time.Now()
	res, n := CheckLinearizable(ops, 5*time.Minute, path+".register.html")
	t.Logf("%d ops; register: %s (%d ops, %v); dual-primary windows %d", len(ops), res, n, time.Since(start).Round(time.Millisecond), pr.DualWindows)
	if res != porcupine.Ok {
		t.Errorf("register: %s", res)
	}
}
