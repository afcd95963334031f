package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// buildWsedge links cmd/wsedge the way `make image` does, with the version
// and revision set by -ldflags.
func buildWsedge(t *testing.T, dir, version, revision string) string {
	t.Helper()
	out := filepath.Join(dir, "wsedge")
	pkg := "github.com/wsedge/wsedge/internal/version"
	cmd := exec.Command("go", "build", "-trimpath",
		"-ldflags", "-s -w -X "+pkg+".version="+version+" -X "+pkg+".revision="+revision,
		"-o", out, "./cmd/wsedge")
	cmd.Dir = "../.." // the root module
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/wsedge: %v\n%s", err, b)
	}
	return out
}

// The image read back from both the layout and the tarball has the config
// the chart relies on, and the binary extracted from its layer runs and
// reports the version and revision of the labels.
func TestImage(t *testing.T) {
	dir := t.TempDir()
	const version, revision = "v9.8.7-test", "0123456789abcdef0123456789abcdef01234567"
	bin := buildWsedge(t, dir, version, revision)
	created := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	o := options{
		Program: programs["wsedge"], Binary: bin, CABundle: "/etc/ssl/certs/ca-certificates.crt", Version: version, Revision: revision,
		Created: created, Arch: runtime.GOARCH, Repo: "wsedge",
		Layout: filepath.Join(dir, "oci"), Tarball: filepath.Join(dir, "wsedge.tar"),
	}
	ref, err := build(o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ref, "wsedge:"+version+"@sha256:") {
		t.Errorf("reference %q", ref)
	}

	idx, err := layout.ImageIndexFromPath(o.Layout)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].MediaType != types.OCIManifestSchema1 ||
		im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != version {
		t.Fatalf("layout index: %+v", im.Manifests)
	}
	fromLayout, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	fromTar, err := tarball.ImageFromPath(o.Tarball, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, img := range map[string]v1.Image{"layout": fromLayout, "tarball": fromTar} {
		t.Run(name, func(t *testing.T) { checkImage(t, img, o) })
	}
	// The tarball holds the same config and layer as the layout.
	c1, _ := fromLayout.ConfigName()
	c2, _ := fromTar.ConfigName()
	if c1 != c2 {
		t.Errorf("config digest: layout %s, tarball %s", c1, c2)
	}

	// Same input, same image: builds are reproducible.
	o2 := o
	o2.Layout, o2.Tarball = filepath.Join(dir, "oci2"), ""
	ref2, err := build(o2)
	if err != nil {
		t.Fatal(err)
	}
	if ref2 != ref {
		t.Errorf("rebuild gave %s, want %s", ref2, ref)
	}
}

func checkImage(t *testing.T, img v1.Image, o options) {
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if cf.OS != "linux" || cf.Architecture != o.Arch {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if c.User != "65532:65532" {
		t.Errorf("user %q, want non-root 65532:65532", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/" + o.Program.name}) || len(c.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q", c.Entrypoint, c.Cmd)
	}
	if len(c.ExposedPorts) != 2 {
		t.Errorf("exposed ports %v", c.ExposedPorts)
	}
	wantPorts := map[string][]string{"wsedge": {"8000/tcp", "9090/tcp"}, "wsedge-operator": {"8080/tcp", "8081/tcp"}}
	for _, p := range wantPorts[o.Program.name] {
		if _, ok := c.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed: %v", p, c.ExposedPorts)
		}
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.title":    o.Program.name,
		"org.opencontainers.image.created":  "2026-12-04T10:00:00Z",
	} {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	if !cf.Created.Equal(o.Created) {
		t.Errorf("created %v", cf.Created)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v (want one on an empty base)", len(layers), err)
	}
	if mt, _ := layers[0].MediaType(); mt != types.OCILayer && mt != types.DockerLayer {
		t.Errorf("layer media type %s", mt)
	}

	// Extract the layer and run the binary from it.
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	root := t.TempDir()
	files := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s owned by %d:%d; the image's files belong to root", h.Name, h.Uid, h.Gid)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		p := filepath.Join(root, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, os.FileMode(h.Mode)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{o.Program.name, "etc/passwd", "etc/ssl/certs/ca-certificates.crt", "tmp/"} {
		if files[want] == nil {
			t.Errorf("layer lacks %s (has %v)", want, keys(files))
		}
	}
	if h := files[o.Program.name]; h != nil && h.Mode&0o111 == 0 {
		t.Errorf("%s mode %o: not executable", o.Program.name, h.Mode)
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if !bytes.Contains(passwd, []byte(":65532:65532:")) {
		t.Errorf("passwd lacks the non-root user:\n%s", passwd)
	}
	if o.Program.name == "wsedge-operator" {
		// The operator has no version flag; its help lists its flags and exits 0.
		out, err := exec.Command(filepath.Join(root, o.Program.name), "-h").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "-leader-elect") {
			t.Fatalf("wsedge-operator -h from the image: %v\n%s", err, out)
		}
		return
	}
	out, err := exec.Command(filepath.Join(root, "wsedge"), "-version").CombinedOutput()
	if err != nil {
		t.Fatalf("wsedge -version from the image: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), o.Version) || !strings.Contains(string(out), o.Revision) {
		t.Errorf("wsedge -version printed %q; want version %s and revision %s as in the labels", out, o.Version, o.Revision)
	}
}

func keys(m map[string]*tar.Header) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The operator's image: the same base, its own binary, title and ports; the
// binary extracted from the layer runs.
func TestOperatorImage(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "wsedge-operator")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd")
	cmd.Dir = "../../operator" // its own module
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build operator/cmd: %v\n%s", err, b)
	}
	o := options{
		Program: programs["wsedge-operator"], Binary: bin, CABundle: "/etc/ssl/certs/ca-certificates.crt",
		Version: "v9.8.7-test", Revision: "0123456789abcdef0123456789abcdef01234567",
		Created: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC), Arch: runtime.GOARCH, Repo: "wsedge-operator",
		Tarball: filepath.Join(dir, "operator.tar"),
	}
	ref, err := build(o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ref, "wsedge-operator:v9.8.7-test@sha256:") {
		t.Errorf("reference %q", ref)
	}
	img, err := tarball.ImageFromPath(o.Tarball, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, img, o)
}

// Bad input fails with a message that names the problem.
func TestImageBadInput(t *testing.T) {
	dir := t.TempDir()
	notELF := filepath.Join(dir, "script")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := options{Program: programs["wsedge"], Binary: notELF, CABundle: "/etc/ssl/certs/ca-certificates.crt", Version: "v1", Revision: "r", Arch: "amd64", Repo: "wsedge", Tarball: filepath.Join(dir, "x.tar")}
	for _, tc := range []struct {
		name   string
		mutate func(*options)
		want   string
	}{
		{"not ELF", func(*options) {}, "not an ELF"},
		{"no binary", func(o *options) { o.Binary = filepath.Join(dir, "missing") }, "binary"},
		{"no version", func(o *options) { o.Version = "" }, "need -program, -binary, -version"},
		{"no program", func(o *options) { o.Program = program{} }, "need -program"},
		{"no output", func(o *options) { o.Tarball = "" }, "-layout and/or -tarball"},
		{"bad tag", func(o *options) { o.Version = "v1 with space" }, "tag from version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.mutate(&o)
			_, err := build(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
}
