package pgnode

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Checkpoint runs CHECKPOINT on the local server, bounded by ctx and
// ProbeTimeout. A planned switchover asks it of the old primary while
// clients still run, so the shutdown checkpoint that follows, while they
// wait, has little left to write.
func (n *Node) Checkpoint(ctx context.Context) error {
	err := n.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "CHECKPOINT")
		return err
	})
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", n.cfg.DataDir, err)
	}
	return nil
}
