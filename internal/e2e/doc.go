// Package e2e runs real pgquorum clusters for end-to-end tests and
// benchmarks: the pgquorum binary built once per test process, one agent
// process per node on 127.0.0.1 with free ports, real PostgreSQL run by the
// agents as the postgres OS user, and `pgquorum ctl` as operators use it.
//
// A Cluster kills its agents and stops every postmaster by PID when the test
// ends, also after failures, and prints the node logs when the test failed.
// Stopping an agent leaves its PostgreSQL running (DESIGN.md invariant 8),
// so the harness, not the agents, owns the postmasters' end.
//
// The test process makes itself a child subreaper: postmasters orphaned by
// a killed agent become its children and are reaped at once, so a killed
// postmaster never lingers as a zombie whose PID keeps postmaster.pid
// "alive" (the machine's init does not reap).
package e2e
