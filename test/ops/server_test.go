// Package ops holds the operability tests that need tools the server's own
// module should not depend on (Prometheus' PromQL parser, chromedp): the
// Grafana dashboard check, the console in headless Chromium, the protocol
// examples replayed from docs/PROTOCOL.md, and the examples/ clients. Every
// test builds and runs the real wsedge binary.
package ops

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wsedge/wsedge/internal/testenv"
)

// repoRoot is the wsedge module, two directories up.
var repoRoot, _ = filepath.Abs("../..")

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	var err error
	binDir, err = os.MkdirTemp("", "wsedge-ops-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

// wsedgeBinary builds cmd/wsedge once per test binary.
func wsedgeBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binPath = filepath.Join(binDir, "wsedge")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/wsedge")
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/wsedge: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// server is one running wsedge process.
type server struct {
	Addr, AdminAddr string
	log             *testenv.Buffer
	cmd             *exec.Cmd
	exited          chan struct{}
}

// Wait returns once the process has exited.
func (s *server) Wait() { <-s.exited }

// Terminate sends SIGTERM: the server drains (reconnect hints, 1001).
func (s *server) Terminate() { _ = s.cmd.Process.Signal(syscall.SIGTERM) }

func (s *server) HTTP(path string) string { return "http://" + s.Addr + path }
func (s *server) WS(path string) string   { return "ws://" + s.Addr + path }

// startServer runs wsedge in production mode (DEBUG=0, Origin checked
// against 127.0.0.1) with the console on; env adds or overrides settings.
func startServer(t *testing.T, env map[string]string) *server {
	t.Helper()
	bin := wsedgeBinary(t)
	s := &server{Addr: testenv.FreeAddr(t), AdminAddr: testenv.FreeAddr(t), log: &testenv.Buffer{}}
	vars := map[string]string{
		"ADDR": s.Addr, "ADMIN_ADDR": s.AdminAddr, "INSTANCE_ID": "ops-test",
		"DEBUG": "0", "SECRET_KEY": "ops-test-secret-4f9d2c7e1b-Zq8xW3vK0pL5mN7", "ALLOWED_HOSTS": "127.0.0.1",
		"CONSOLE": "1", "EVENT_LOOPS": "2", "LOG_FORMAT": "text", "LOG_LEVEL": "info",
		"LOCAL_MODEL_DELAY": "0s", "DRAIN_TIMEOUT": "2s", "DRAIN_SPREAD": "100ms", "RECONNECT_JITTER": "200ms",
		"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME"),
	}
	for k, v := range env {
		vars[k] = v
	}
	s.Addr = vars["ADDR"]
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	cmd := exec.Command(bin)
	s.cmd = cmd
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+vars[k])
	}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start wsedge: %v", err)
	}
	exited := make(chan struct{})
	s.exited = exited
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("wsedge log:\n%s", s.log.String())
		}
	})
	testenv.WaitFor(t, "wsedge /health/", 30*time.Second, func() bool {
		select {
		case <-exited:
			t.Fatalf("wsedge exited:\n%s", s.log.String())
		default:
		}
		resp, err := http.Get(s.HTTP("/health/"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return s
}

// get fetches url and returns the body, failing the test on any error.
func get(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, resp.Header, b
}
