package e2e

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// DSN returns a connection string for id's PostgreSQL as the superuser.
func (c *Cluster) DSN(id string) string {
	n := c.Node(id)
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres connect_timeout=3 sslmode=disable",
		n.PGPort, SuperuserPassword)
}

// DB connects to id's PostgreSQL as the superuser.
func (c *Cluster) DB(ctx context.Context, id string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, c.DSN(id))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", id, err)
	}
	return conn, nil
}

// Exec runs sql on id's PostgreSQL on a fresh connection.
func (c *Cluster) Exec(ctx context.Context, id, sql string, args ...any) error {
	conn, err := c.DB(ctx, id)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("%s: %s: %w", id, sql, err)
	}
	return nil
}

// QueryInts runs sql on id's PostgreSQL and returns the first column of
// every row as int64.
func (c *Cluster) QueryInts(ctx context.Context, id, sql string, args ...any) ([]int64, error) {
	return query[int64](ctx, c, id, sql, args...)
}

// QueryStrings runs sql on id's PostgreSQL and returns the first column of
// every row as string.
func (c *Cluster) QueryStrings(ctx context.Context, id, sql string, args ...any) ([]string, error) {
	return query[string](ctx, c, id, sql, args...)
}

func query[T any](ctx context.Context, c *Cluster, id, sql string, args ...any) ([]T, error) {
	conn, err := c.DB(ctx, id)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", id, sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[T])
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", id, sql, err)
	}
	return out, nil
}
