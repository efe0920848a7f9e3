package wire

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the codec pure: no sockets, files, syscalls or logging.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbidden := []string{"net", "os", "os/exec", "syscall", "log", "log/slog", "time", "crypto/rand", "unsafe"}
	for _, imp := range strings.Fields(string(out)) {
		bad := strings.Contains(imp, ".") // any non-standard module
		for _, f := range forbidden {
			bad = bad || imp == f
		}
		if bad {
			t.Errorf("mobike/wire imports %s", imp)
		}
	}
}
