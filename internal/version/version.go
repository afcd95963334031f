// Package version reports what build of wsedge is running. The release build
// sets version and revision at link time:
//
//	go build -ldflags "-X github.com/wsedge/wsedge/internal/version.version=v0.2.0 -X github.com/wsedge/wsedge/internal/version.revision=<sha>"
//
// Without them (go run, go test) the module's build info fills in what it can.
package version

import (
	"runtime"
	"runtime/debug"
)

// Set by -ldflags -X; package variables because the linker can only set those.
var (
	version  = ""
	revision = ""
)

// Info is one build's identity, printed by `wsedge version`, exported as
// wsedge_build_info and written into the image's OCI labels.
type Info struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	GoVersion string `json:"go_version"`
}

// Get returns the running build's identity.
func Get() Info {
	in := Info{Version: version, Revision: revision, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && in.Revision == "" {
				in.Revision = s.Value
			}
		}
	}
	if in.Version == "" {
		in.Version = "dev"
	}
	if in.Revision == "" {
		in.Revision = "unknown"
	}
	return in
}
