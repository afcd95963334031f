// Command image builds wsedge's OCI image without a Docker engine: one layer
// holding the static binary, a CA bundle (Bedrock and Redis TLS need one) and
// a passwd entry for the non-root user, on an empty base. It writes an OCI
// image layout and a docker-style tarball that `crane push` accepts.
//
//	go run . -binary ../../bin/image/wsedge -version v0.3.0 -revision <sha> \
//	    -layout ../../bin/wsedge-oci -tarball ../../bin/wsedge-image.tar
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's fixed facts; the chart's securityContext uses the same uid.
const (
	uid       = 65532
	caPath    = "etc/ssl/certs/ca-certificates.crt"
	sourceURL = "https://github.com/wsedge/wsedge"
)

// program is what differs between the two images the chart runs: the
// server and the operator (operator/, its own module).
type program struct {
	name  string            // image title, default repository and the binary's path under /
	ports map[string]string // exposed port → what listens there
}

var programs = map[string]program{
	"wsedge": {name: "wsedge", ports: map[string]string{
		"8000/tcp": "ADDR: HTTP and WebSocket",
		"9090/tcp": "ADMIN_ADDR: /metrics, pprof, /admin/ (set ADMIN_ADDR=0.0.0.0:9090 to reach it)",
	}},
	"wsedge-operator": {name: "wsedge-operator", ports: map[string]string{
		"8080/tcp": "--metrics-bind-address: wsedge_operator_* and controller-runtime metrics",
		"8081/tcp": "--health-probe-bind-address: /healthz, /readyz",
	}},
}

func (p program) entrypoint() string { return "/" + p.name }

// options is one build's input.
type options struct {
	Program  program   // which binary: programs["wsedge"] or programs["wsedge-operator"]
	Binary   string    // static linux binary of cmd/wsedge or of the operator
	CABundle string    // PEM bundle copied to /etc/ssl/certs/ca-certificates.crt
	Version  string    // org.opencontainers.image.version and the tag
	Revision string    // org.opencontainers.image.revision
	Created  time.Time // image and file times; fixed so builds are reproducible
	Arch     string    // GOARCH of the binary
	Repo     string    // repository name written into the tarball and layout
	Layout   string    // OCI layout directory (replaced)
	Tarball  string    // docker-style tarball (replaced)
}

func main() {
	var o options
	var created string
	prog := flag.String("program", "wsedge", "which image: wsedge (the server) or wsedge-operator")
	flag.StringVar(&o.Binary, "binary", "", "static linux binary of that program (required)")
	flag.StringVar(&o.CABundle, "ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA certificates (PEM) to put into the image")
	flag.StringVar(&o.Version, "version", "", "image version label and tag (required)")
	flag.StringVar(&o.Revision, "revision", "", "source revision label (required)")
	flag.StringVar(&created, "created", "1970-01-01T00:00:00Z", "creation time (RFC 3339), e.g. the commit time")
	flag.StringVar(&o.Arch, "arch", runtime.GOARCH, "architecture of the binary")
	flag.StringVar(&o.Repo, "repo", "", "repository name for the tarball's tag (default: the program's name)")
	flag.StringVar(&o.Layout, "layout", "", "write an OCI image layout to this directory")
	flag.StringVar(&o.Tarball, "tarball", "", "write a tarball (crane push, docker load) to this file")
	flag.Parse()
	p, ok := programs[*prog]
	if !ok {
		fmt.Fprintf(os.Stderr, "image: -program %q: want wsedge or wsedge-operator\n", *prog)
		os.Exit(2)
	}
	o.Program = p
	if o.Repo == "" {
		o.Repo = p.name
	}
	t, err := time.Parse(time.RFC3339, created)
	if err != nil {
		fmt.Fprintf(os.Stderr, "image: -created: %v\n", err)
		os.Exit(2)
	}
	o.Created = t
	ref, err := build(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(ref)
}

// tag is the reference written into the tarball and the layout's ref.name.
func (o options) tag() (name.Tag, error) {
	return name.NewTag(o.Repo+":"+strings.ReplaceAll(o.Version, "+", "_"), name.WithDefaultRegistry(""))
}

// build writes the image and returns its tag and digest.
func build(o options) (string, error) {
	if o.Program.name == "" || o.Binary == "" || o.Version == "" || o.Revision == "" || (o.Layout == "" && o.Tarball == "") {
		return "", errors.New("need -program, -binary, -version, -revision and -layout and/or -tarball")
	}
	tag, err := o.tag()
	if err != nil {
		return "", fmt.Errorf("tag from version %q: %w", o.Version, err)
	}
	img, err := image(o)
	if err != nil {
		return "", err
	}
	if o.Layout != "" {
		if err := os.RemoveAll(o.Layout); err != nil {
			return "", fmt.Errorf("replace layout: %w", err)
		}
		p, err := layout.Write(o.Layout, empty.Index)
		if err != nil {
			return "", fmt.Errorf("write layout: %w", err)
		}
		err = p.AppendImage(img, layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": tag.TagStr(),
		}))
		if err != nil {
			return "", fmt.Errorf("write layout: %w", err)
		}
	}
	if o.Tarball != "" {
		if err := tarball.WriteToFile(o.Tarball, tag, img); err != nil {
			return "", fmt.Errorf("write tarball: %w", err)
		}
	}
	d, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("image digest: %w", err)
	}
	return tag.String() + "@" + d.String(), nil
}

// image assembles the image in memory (the binary is tens of MB).
func image(o options) (v1.Image, error) {
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("binary: %w", err)
	}
	if !bytes.HasPrefix(bin, []byte("\x7fELF")) {
		return nil, fmt.Errorf("binary %s is not an ELF executable (build with GOOS=linux)", o.Binary)
	}
	ca, err := os.ReadFile(o.CABundle)
	if err != nil {
		return nil, fmt.Errorf("CA bundle (Debian: apt-get install ca-certificates): %w", err)
	}
	layerTar, err := rootfs(o.Created, o.Program, bin, ca)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: o.Created},
			CreatedBy: "hack/image: " + o.Program.name + " " + o.Version,
			Comment:   "static binary, CA bundle, passwd",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", o.Arch
	cf.Created = v1.Time{Time: o.Created}
	cf.Config = v1.Config{
		User:         fmt.Sprintf("%d:%d", uid, uid),
		Entrypoint:   []string{o.Program.entrypoint()},
		WorkingDir:   "/",
		Env:          []string{"SSL_CERT_FILE=/" + caPath},
		ExposedPorts: map[string]struct{}{},
		Labels: map[string]string{
			"org.opencontainers.image.title":    o.Program.name,
			"org.opencontainers.image.version":  o.Version,
			"org.opencontainers.image.revision": o.Revision,
			"org.opencontainers.image.source":   sourceURL,
			"org.opencontainers.image.created":  o.Created.UTC().Format(time.RFC3339),
		},
	}
	for port := range o.Program.ports {
		cf.Config.ExposedPorts[port] = struct{}{}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return img, nil
}

// rootfs is the single layer's tar: directories first, as a tar extractor
// expects, owned by root so the non-root process cannot modify them.
func rootfs(mod time.Time, p program, bin, ca []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: mod, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mod, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", uid, uid)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", uid)
	steps := []func() error{
		func() error { return dir("etc/") },
		func() error { return file("etc/passwd", 0o644, []byte(passwd)) },
		func() error { return file("etc/group", 0o644, []byte(group)) },
		func() error { return dir("etc/ssl/") },
		func() error { return dir("etc/ssl/certs/") },
		func() error { return file(caPath, 0o644, ca) },
		func() error {
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777, ModTime: mod, Format: tar.FormatPAX})
		},
		func() error { return file(p.name, 0o755, bin) },
		tw.Close,
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, fmt.Errorf("layer tar: %w", err)
		}
	}
	return buf.Bytes(), nil
}
