//go:build chaos

package chaos

import (
	"testing"

	"github.com/pgquorum/pgquorum/internal/e2e"
)

// runMain runs the tests and removes the pgquorum binary built for them.
func runMain(m *testing.M) int { return e2e.Main(m) }
