package e2e_test

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/internal/e2e"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// TestForeignDataDir_Refused: a member whose data directory holds another
// PostgreSQL cluster (another system identifier) is refused: `ctl list`
// shows it failed with a message, and its files stay as they were.
func TestForeignDataDir_Refused(t *testing.T) {
	c := e2e.New(t, e2e.Options{})
	primary, epoch := c.WaitHealthy(60 * time.Second)
	victim := "n3"
	if primary == victim {
		victim = "n2"
	}
	c.StopAgent(victim)
	if _, err := e2e.StopPostmaster(c.Node(victim).PGDataDir, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	dir := c.Node(victim).PGDataDir
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	e2e.RunAsPostgres(t, nil, "initdb", "-D", dir, "-U", "postgres", "--no-sync", "-k", "--auth=trust")
	before := fingerprint(t, dir)

	c.StartAgent(victim)
	e2e.Eventually(t, 30*time.Second, victim+" refused in ctl list", func() error {
		ms, err := c.List()
		if err != nil {
			return err
		}
		var h *pb.PostgresHealth
		for _, m := range ms {
			if m.Id == victim {
				h = m.Health
			}
		}
		if h != nil && h.State == pb.PgState_PG_STATE_FAILED && strings.Contains(h.Error, "system identifier") {
			return nil
		}
		return fmt.Errorf("%s not failed yet; its health: %v", victim, h)
	})
	out, _ := c.Ctl("list")
	t.Logf("ctl list:\n%s", out)
	if !strings.Contains(out, "failed") {
		t.Errorf("ctl list does not show %s failed:\n%s", victim, out)
	}
	if p, e, err := c.Primary(); err != nil || p != primary || e != epoch {
		t.Errorf("primary %s epoch %d (%v), want %s epoch %d", p, e, err, primary, epoch)
	}
	if after := fingerprint(t, dir); after != before {
		t.Errorf("foreign data directory changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// fingerprint lists every file of dir with its size and content hash.
func fingerprint(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fmt.Fprintf(&b, "%s %d %x\n", rel, len(data), sha256.Sum256(data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
