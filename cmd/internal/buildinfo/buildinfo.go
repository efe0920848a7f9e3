// Package buildinfo tells which build of mobiked is running: the version
// (set by the package build with -ldflags "-X …buildinfo.version=V", else the
// main module's version from the Go build info) and the VCS revision the Go
// toolchain stamped into the binary.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version and revision are set by `make build`/`make deb` through -ldflags
// -X. The Go toolchain stamps the revision itself (-buildvcs) only in a plain
// clone, not in a git worktree; an ldflags revision fills that gap.
var version, revision string

// Info is what --version prints and mobike_build_info exports.
type Info struct {
	Version   string // package or module version; "devel" when unknown
	Revision  string // VCS revision (full hash); "unknown" when not stamped
	Modified  bool   // the work tree had uncommitted changes
	Time      string // commit time (RFC 3339), when stamped
	GoVersion string
}

// Read returns the running binary's build information.
func Read() Info {
	in := from(version, readBuildInfo())
	if in.Revision == "unknown" && revision != "" {
		in.Revision = revision
	}
	return in
}

func readBuildInfo() *debug.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return bi
}

func from(v string, bi *debug.BuildInfo) Info {
	in := Info{Version: v, Revision: "unknown", GoVersion: runtime.Version()}
	if bi == nil {
		if in.Version == "" {
			in.Version = "devel"
		}
		return in
	}
	if in.Version == "" {
		in.Version = bi.Main.Version
	}
	if in.Version == "" || in.Version == "(devel)" {
		in.Version = "devel"
	}
	if bi.GoVersion != "" {
		in.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		case "vcs.time":
			in.Time = s.Value
		}
	}
	return in
}

// ShortRevision is the first 12 characters of the revision, with "+dirty"
// when the tree was modified.
func (in Info) ShortRevision() string {
	r := in.Revision
	if len(r) > 12 {
		r = r[:12]
	}
	if in.Modified {
		r += "+dirty"
	}
	return r
}

// String is the --version line: "NAME VERSION (revision REV, GOVERSION)".
func (in Info) String() string {
	s := fmt.Sprintf("%s (revision %s", in.Version, in.ShortRevision())
	if in.Time != "" {
		s += ", " + in.Time
	}
	return s + ", " + in.GoVersion + ")"
}
