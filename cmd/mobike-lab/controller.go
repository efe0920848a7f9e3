package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// mobikedBin finds the mobiked binary: next to this executable (make build
// puts both in bin/), then $PATH.
func mobikedBin() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "mobiked")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("mobiked"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("mobiked binary not found next to mobike-lab or in $PATH (run `make build`)")
}
