package chaos

import (
	"os"
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
	start := time.Now()
	res, n := CheckLinearizable(ops, 5*time.Minute, path+".register.html")
	t.Logf("%d ops; register: %s (%d ops, %v); dual-primary windows %d", len(ops), res, n, time.Since(start).Round(time.Millisecond), pr.DualWindows)
	if res != porcupine.Ok {
		t.Errorf("register: %s", res)
	}
}
