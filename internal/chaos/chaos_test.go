//go:build chaos

package chaos

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

// TestChaosShort is the bounded campaign `make test` runs: about two
// minutes of faults drawn from every kind, then the checks.
func TestChaosShort(t *testing.T) {
	Run(t, Config{
		Seed: SeedFromEnv(t), Duration: envDuration(t, "CHAOS_DURATION", 110*time.Second),
		Combine: 0.2, HealBound: 90 * time.Second, Inserters: 3, Registers: 3, Kinds: envKinds(),
	})
}

// TestChaosCampaign is the long campaign of `make chaos`
// (CHAOS_DURATION, default 30m; SEED replays).
func TestChaosCampaign(t *testing.T) {
	Run(t, Config{
		Seed: SeedFromEnv(t), Duration: envDuration(t, "CHAOS_DURATION", 30*time.Minute),
		Combine: 0.25, HealBound: 120 * time.Second, Inserters: 4, Registers: 3, Kinds: envKinds(),
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

// envKinds is $CHAOS_KINDS, a comma-separated list of nemesis kinds to
// restrict a campaign to (all kinds when unset).
func envKinds() []string {
	if s := os.Getenv("CHAOS_KINDS"); s != "" {
		return strings.Split(s, ",")
	}
	return nil
}
