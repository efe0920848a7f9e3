package policy

import (
	"testing"

	"github.com/mobiked/mobiked/internal/depcheck"
)

// TestDeps keeps policy pure (style.md H20).
func TestDeps(t *testing.T) { depcheck.Check(t, "github.com/mobiked/mobiked/policy") }
