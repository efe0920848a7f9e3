package main

import (
	"context"
	"errors"

	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
)

// startMobiked starts mobiked in the lab's mn namespace.
func startMobiked(ctx context.Context, l *lab.Lab) (int, error) {
	return 0, errors.New("mobiked does not exist yet: --controller is not available")
}
