// Package safefile reads small files that an operator (or an attacker who
// got to write one) names: configs and keys. A device, a FIFO or a directory
// is refused before anything is read (a FIFO without a writer would block
// forever, /dev/zero would never end), and a file longer than the caller's
// limit is refused without being read whole.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// ErrTooLarge is returned (wrapped) for a file over the limit.
var ErrTooLarge = errors.New("file too large")

// ReadRegular returns the contents of the regular file at path (symlinks
// followed), at most limit octets.
func ReadRegular(path string, limit int64) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO must not wait for a writer; it has no
	// effect on regular files.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s)", path, fi.Mode().Type())
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s: %w: larger than %d octets", path, ErrTooLarge, limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1)) // it may grow meanwhile
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: %w: larger than %d octets", path, ErrTooLarge, limit)
	}
	return data, nil
}
