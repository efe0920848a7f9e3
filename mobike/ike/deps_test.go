package ike

import (
	"testing"

	"github.com/mobiked/mobiked/internal/depcheck"
)

// TestDeps keeps the cryptography sans-IO, like mobike/wire and the core.
func TestDeps(t *testing.T) {
	depcheck.Check(t, "github.com/mobiked/mobiked/mobike/ike")
	depcheck.Check(t, "github.com/mobiked/mobiked/mobike/ike/iketest")
	depcheck.Check(t, "github.com/mobiked/mobiked/mobike/proto")
}
