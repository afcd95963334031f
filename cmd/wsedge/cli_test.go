package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsedge/wsedge/internal/testenv"
)

// The command line, on the built binary: what a new user types.

// cleanEnv is a minimal environment: nothing of the machine's own wsedge or
// Django settings leaks into a test.
func cleanEnv(kv ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	return append(env, kv...)
}

// runBinary runs the server binary to completion (bounded) and returns its
// output and exit status.
func runBinary(t *testing.T, dir string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(e2eBinary(t), args...)
	cmd.Dir, cmd.Env = dir, env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return o.String(), e.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), 0
}

// server is a wsedge process started by a test, with its log.
type server struct {
	cmd    *exec.Cmd
	addr   string
	admin  string
	log    *testenv.Buffer
	exited chan error
}

// startBinary starts the server and waits for /health/; ADDR and
// ADMIN_ADDR are added to env unless args set them.
func startBinary(t *testing.T, dir string, env []string, args ...string) *server {
	t.Helper()
	s := &server{addr: testenv.FreeAddr(t), admin: testenv.FreeAddr(t), log: &testenv.Buffer{},
		exited: make(chan error, 1)}
	s.cmd = exec.Command(e2eBinary(t), args...)
	s.cmd.Dir = dir
	s.cmd.Env = append(env, "ADDR="+s.addr, "ADMIN_ADDR="+s.admin)
	s.cmd.Stderr = io.MultiWriter(s.log, testLog{t})
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() { _ = s.cmd.Process.Kill() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get("http://" + s.addr + "/health/"); err == nil {
			resp.Body.Close()
			return s
		}
		select {
		case err := <-s.exited:
			t.Fatalf("server exited: %v\n%s", err, s.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not answer /health/\n%s", s.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends sig and returns the exit status.
func (s *server) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(30 * time.Second):
		t.Fatal("server did not exit within 30s")
		return -1
	}
}

func (s *server) get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestCLIVersion(t *testing.T) {
	want := "wsedge " + e2eVersion + "\nrevision " + e2eRevision + "\n" + runtime.Version() + "\n"
	for _, args := range [][]string{{"version"}, {"-version"}, {"--version"}, {"-debug", "-version"}} {
		out, errOut, code := runBinary(t, t.TempDir(), cleanEnv(), args...)
		if code != 0 || out != want {
			t.Errorf("wsedge %v: exit %d, stdout %q (stderr %q), want %q", args, code, out, errOut, want)
		}
	}
}

func TestCLIHelpAndUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"-help"}, {"--help"}} {
		_, help, code := runBinary(t, t.TempDir(), cleanEnv(), args...)
		if code != 0 {
			t.Errorf("wsedge %v: exit %d, want 0", args, code)
		}
		for _, s := range settings {
			if !strings.Contains(help, s.key) || !strings.Contains(help, s.help) {
				t.Errorf("wsedge %v does not show %s with its help", args, s.key)
			}
		}
		if strings.Contains(help, "help requested") {
			t.Errorf("-h reported as an error:\n%s", help)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-no-such-flag"}, "not defined: -no-such-flag"},
		{[]string{"-debug", "maybe"}, "unexpected arguments"},
		{[]string{"serve"}, "unexpected arguments"},
		{[]string{"-addr"}, "needs an argument"},
	} {
		_, errOut, code := runBinary(t, t.TempDir(), cleanEnv(), tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("wsedge %v: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

// "(default X)" in -h is what the configuration uses when nothing is set:
// loading X explicitly changes nothing. Every setting says its default.
func TestConfigHelpDefaults(t *testing.T) {
	def := regexp.MustCompile(`\(default ([^)]+?)(?:: [^)]*)?\)`)
	base := cfgLoad(t, cfgProd())
	checked := 0
	for _, s := range settings {
		if !strings.Contains(s.help, "default") && !strings.Contains(s.help, "empty:") && !strings.Contains(s.help, "required") {
			t.Errorf("%s: help does not say its default: %q", s.key, s.help)
		}
		m := def.FindStringSubmatch(s.help)
		if m == nil {
			continue
		}
		v := m[1]
		if v == "empty" {
			v = ""
		}
		checked++
		got := cfgLoad(t, cfgProd(s.key, v))
		if !reflect.DeepEqual(got, base) {
			t.Errorf("%s=%q (the default -h shows) changes the configuration:\n%+v\nvs\n%+v", s.key, v, got, base)
		}
	}
	if checked < 40 {
		t.Fatalf("only %d defaults found in the help texts: the pattern is broken", checked)
	}
}

// A bare boolean flag turns the setting on: -debug alone starts a server
// without SECRET_KEY or ALLOWED_HOSTS; SIGINT (Ctrl-C) drains and exits 0.
func TestCLIBareBooleanFlagAndSIGINT(t *testing.T) {
	s := startBinary(t, t.TempDir(), cleanEnv("LOG_FORMAT=text"), "-debug")
	if code := s.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d after SIGINT, want 0\n%s", code, s.log)
	}
	if !strings.Contains(s.log.String(), "stopped") {
		t.Fatalf("no clean stop in the log:\n%s", s.log)
	}
	// -debug=0 and -debug 0 are production: the missing secret is reported.
	for _, args := range [][]string{{"-debug=0"}, {"-debug", "0"}, {"-debug", "false", "-addr", ":1"}} {
		_, errOut, code := runBinary(t, t.TempDir(), cleanEnv("ALLOWED_HOSTS=a.com", "DEBUG=1"), args...)
		if code != 1 || !strings.Contains(errOut, "SECRET_KEY") {
			t.Fatalf("%v without a secret: exit %d, %s", args, code, errOut)
		}
	}
}

// The shipped EnvironmentFile, used unchanged, does not start a production
// server: its SECRET_KEY is the example.
func TestCLIRefusesShippedEnvFile(t *testing.T) {
	example, err := filepath.Abs("../../deploy/wsedge.env.example")
	if err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runBinary(t, t.TempDir(), cleanEnv("ENV_FILE="+example))
	if code != 1 || !strings.Contains(errOut, "SECRET_KEY") || !strings.Contains(errOut, "example value") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
}

// .env in the working directory, or ENV_FILE, fills in settings the
// environment does not have; the environment and flags win.
func TestCLIEnvFile(t *testing.T) {
	dir := t.TempDir()
	dotenv := "# the original's .env\nexport DJANGO_DEBUG=True\nINSTANCE_ID=from-dotenv\nLOG_FORMAT=\"json\"\nLOG_LEVEL=debug # comment\n"
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(dotenv), 0o600); err != nil {
		t.Fatal(err)
	}
	// .env only: DJANGO_DEBUG=True from the file lets it start without secrets.
	s := startBinary(t, dir, cleanEnv())
	if code := s.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d\n%s", code, s.log)
	}
	if l := s.log.String(); !strings.Contains(l, `"instance_id":"from-dotenv"`) || !strings.Contains(l, `"env_file":".env"`) ||
		!strings.Contains(l, `"level":"DEBUG"`) {
		t.Fatalf(".env not applied:\n%s", l)
	}
	// The environment wins over the file, a flag over both.
	s = startBinary(t, dir, cleanEnv("INSTANCE_ID=from-env", "LOG_LEVEL=info"), "-log-format=text")
	s.stop(t, syscall.SIGTERM)
	if l := s.log.String(); !strings.Contains(l, "instance_id=from-env") || strings.Contains(l, "level=DEBUG") {
		t.Fatalf("environment or flag lost to .env:\n%s", l)
	}
	// ENV_FILE names another file; .env is then not read.
	other := filepath.Join(t.TempDir(), "wsedge.env")
	if err := os.WriteFile(other, []byte("DEBUG=1\nINSTANCE_ID=from-env-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = startBinary(t, dir, cleanEnv("ENV_FILE="+other, "LOG_FORMAT=text"))
	s.stop(t, syscall.SIGTERM)
	if l := s.log.String(); !strings.Contains(l, "instance_id=from-env-file") {
		t.Fatalf("ENV_FILE not applied:\n%s", l)
	}
	// A missing ENV_FILE is an error, not a silent default.
	_, errOut, code := runBinary(t, dir, cleanEnv("ENV_FILE="+filepath.Join(dir, "nope.env")))
	if code != 1 || !strings.Contains(errOut, "nope.env") {
		t.Fatalf("missing ENV_FILE: exit %d, %s", code, errOut)
	}
}

// documentedCounters are the wsedge_*_total names the docs mention, but for
// the operator's (wsedge_operator_*: another program, operator/).
func documentedCounters(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	re := regexp.MustCompile(`wsedge_[a-z0-9_]+_total\b`)
	seen := map[string]bool{}
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range re.FindAllString(string(b), -1) {
			if !seen[n] && !strings.HasPrefix(n, "wsedge_operator_") {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	if len(names) < 5 {
		t.Fatalf("found only %v in the docs", names)
	}
	return names
}

// Right after start, before any traffic: every counter the docs mention has
// a series (at 0), so alerts on rate() see one; wsedge_build_info names the
// build; the admin root lists its endpoints. With Redis, so that the
// wsedge_redis_* counters are there too.
func TestCLIMetricsFromStart(t *testing.T) {
	rd := testenv.StartRedis(t)
	s := startBinary(t, t.TempDir(), cleanEnv("DEBUG=1", "REDIS_URL="+rd.URL()))
	metrics := s.get(t, "http://"+s.admin+"/metrics")
	for _, name := range documentedCounters(t) {
		if !regexp.MustCompile(`(?m)^` + name + `(\{[^}]*\})? `).MatchString(metrics) {
			t.Errorf("%s has no series at start", name)
		}
	}
	want := `wsedge_build_info{goversion="` + runtime.Version() + `",revision="` + e2eRevision + `",version="` + e2eVersion + `"} 1`
	if !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s", want)
	}
	index := s.get(t, "http://"+s.admin+"/")
	for _, p := range []string{"/metrics", "/debug/pprof/", e2eVersion} {
		if !strings.Contains(index, p) {
			t.Errorf("admin index does not mention %s:\n%s", p, index)
		}
	}
	if code := s.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
}
