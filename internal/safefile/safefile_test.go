package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestReadRegular(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	os.WriteFile(small, []byte("hello"), 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(small, link)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path    string
		limit   int64
		want    string
		wantErr string
	}{
		{small, 5, "hello", ""},
		{link, 5, "hello", ""},
		{small, 4, "", "larger than 4"},
		{fifo, 5, "", "not a regular file"},
		{"/dev/zero", 5, "", "not a regular file"},
		{dir, 5, "", "not a regular file"},
		{filepath.Join(dir, "missing"), 5, "", "no such file"},
	} {
		got, err := ReadRegular(tc.path, tc.limit)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err %v, want %q", tc.path, err, tc.wantErr)
			}
			if strings.Contains(tc.wantErr, "larger") && !errors.Is(err, ErrTooLarge) {
				t.Errorf("%s: %v is not ErrTooLarge", tc.path, err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %q %v, want %q", tc.path, got, err, tc.want)
		}
	}
}
