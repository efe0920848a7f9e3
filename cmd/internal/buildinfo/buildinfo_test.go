package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFrom(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.7", Main: debug.Module{Version: "v0.0.0-20261129-abcdef"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"},
			{Key: "vcs.time", Value: "2026-11-29T10:00:00Z"}}}
	tests := []struct {
		name string
		ver  string
		bi   *debug.BuildInfo
		want Info
		str  string
	}{
		{"module version and vcs", "", bi, Info{Version: "v0.0.0-20261129-abcdef", Revision: "0123456789abcdef0123", Modified: true,
			Time: "2026-11-29T10:00:00Z", GoVersion: "go1.26.7"}, "v0.0.0-20261129-abcdef (revision 0123456789ab+dirty, 2026-11-29T10:00:00Z, go1.26.7)"},
		{"ldflags version wins", "0.2.0", bi, Info{Version: "0.2.0", Revision: "0123456789abcdef0123", Modified: true,
			Time: "2026-11-29T10:00:00Z", GoVersion: "go1.26.7"}, "0.2.0 (revision"},
		{"devel without vcs", "", &debug.BuildInfo{GoVersion: "go1.26.7", Main: debug.Module{Version: "(devel)"}},
			Info{Version: "devel", Revision: "unknown", GoVersion: "go1.26.7"}, "devel (revision unknown, go1.26.7)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := from(tc.ver, tc.bi)
			if got != tc.want {
				t.Fatalf("from = %+v, want %+v", got, tc.want)
			}
			if !strings.HasPrefix(got.String(), tc.str) {
				t.Fatalf("String = %q, want prefix %q", got.String(), tc.str)
			}
		})
	}
}

// TestReadStampsRevision: a test binary built inside the git work tree
// carries no VCS stamp (go test does not stamp), so Read must still give a
// version and the Go version.
func TestReadStampsRevision(t *testing.T) {
	in := Read()
	if in.Version == "" || in.GoVersion == "" || in.Revision == "" {
		t.Fatalf("Read = %+v, want every field filled", in)
	}
}
