package servertest

import (
	"fmt"
	"testing"
	"time"
)

// NewExpect starts n nodes that bootstrap with bootstrap-expect: no
// initial list, each told to expect n voters and given every node's gRPC
// address to discover them.
func NewExpect(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c := newCluster(t)
	for i := 1; i <= n; i++ {
		c.newNode(fmt.Sprintf("n%d", i))
	}
	var addrs []string
	for _, node := range c.Nodes {
		addrs = append(addrs, node.GRPCAddr)
	}
	for _, node := range c.Nodes {
		node.Opts.Expect = n
		node.Opts.Join = addrs
		for _, o := range opts {
			o(&node.Opts)
		}
		c.Start(node)
	}
	c.WaitLeader(20 * time.Second)
	return c
}
