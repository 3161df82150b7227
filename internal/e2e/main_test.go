package e2e_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/internal/e2e"
)

func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// waitIDs waits until id's PostgreSQL has every id of want in table t.
func waitIDs(t *testing.T, c *e2e.Cluster, node string, want ...int64) {
	t.Helper()
	e2e.Eventually(t, 30*time.Second, fmt.Sprintf("rows %v on %s", want, node), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		got, err := c.QueryInts(ctx, node, "SELECT id::bigint FROM t ORDER BY id")
		if err != nil {
			return err
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				return fmt.Errorf("missing %d (have %d rows)", w, len(got))
			}
		}
		return nil
	})
}
