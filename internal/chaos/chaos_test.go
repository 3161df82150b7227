//go:build chaos

package chaos

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

// TestChaosShort is the bounded campaign `make test` runs: about two
// minutes of faults drawn from every kind without an open finding
// (ShortKinds), then the checks.
func TestChaosShort(t *testing.T) {
	kinds := envKinds()
	if len(kinds) == 0 {
		kinds = ShortKinds()
	}
	Run(t, Config{
		Seed: SeedFromEnv(t), Duration: envDuration(t, "CHAOS_DURATION", 110*time.Second),
		Combine: 0.2, HealBound: 90 * time.Second, Inserters: 3, Registers: 3, Kinds: kinds, Nodes: envNodes(t),
	})
}

// TestChaosCampaign is the long campaign of `make chaos`
// (CHAOS_DURATION, default 30m; SEED replays).
func TestChaosCampaign(t *testing.T) {
	Run(t, Config{
		Seed: SeedFromEnv(t), Duration: envDuration(t, "CHAOS_DURATION", 30*time.Minute),
		Combine: 0.25, HealBound: 120 * time.Second, Inserters: 4, Registers: 3, Kinds: envKinds(), Nodes: envNodes(t),
	})
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("chaos: %s=%q: %v", name, s, err)
	}
	return d
}

// envNodes is $CHAOS_NODES, the number of pgquorum nodes (3 to 5,
// default 3).
func envNodes(t *testing.T) int {
	s := os.Getenv("CHAOS_NODES")
	if s == "" {
		return 3
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 3 || n > 5 {
		t.Fatalf("chaos: CHAOS_NODES=%q: want 3, 4 or 5", s)
	}
	return n
}

// envKinds is $CHAOS_KINDS, a comma-separated list of nemesis kinds to
// restrict a campaign to (all kinds when unset).
func envKinds() []string {
	if s := os.Getenv("CHAOS_KINDS"); s != "" {
		return strings.Split(s, ",")
	}
	return nil
}
