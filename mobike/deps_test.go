package mobike

import (
	"testing"

	"github.com/mobiked/mobiked/internal/depcheck"
)

// TestDeps keeps the core sans-IO (style.md H20).
func TestDeps(t *testing.T) { depcheck.Check(t, "github.com/mobiked/mobiked/mobike") }
