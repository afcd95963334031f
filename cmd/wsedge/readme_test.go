package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsedge/wsedge/internal/testenv"
)

// The README's walkthroughs, word for word: the test checks that README.md
// holds exactly these commands and lines, then runs them against a real
// server (on a free port instead of 8000) with the shipped client.
const (
	readmeListenerA = "go run ./cmd/wsedge-cli -hello admin,web ws://127.0.0.1:8000/ws/session/11/"
	readmeListenerB = "go run ./cmd/wsedge-cli -hello agent,ios ws://127.0.0.1:8000/ws/session/11/"
	readmeBroadcast = `{"type":"broadcast","msg":"hello"}`
	readmeDelivered = `{"type":"session_message","user_type":"agent","client_type":"ios","msg":"hello","data":null}`
	readmePresence  = `{"type":"presence"}`
	readmeChatCLI   = "go run ./cmd/wsedge-cli ws://127.0.0.1:8000/ws/chat/"
	readmeChatTurn  = `{"type":"chat","message":"Hello, how can you help?","thread_id":"demo-thread","channel":"web","data":[]}`
)

// cliProc is a running wsedge-cli with its stdin and stdout lines.
type cliProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startCLI(t *testing.T, bin string, args ...string) *cliProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &cliProc{cmd: cmd, stdin: stdin, lines: make(chan string, 256)}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	return p
}

func (p *cliProc) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

// expect returns the next line that has the given type, failing after 10 s.
func (p *cliProc) expect(t *testing.T, typ string) (string, map[string]any) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("client exited while waiting for %q", typ)
			}
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["type"] == typ {
				return line, m
			}
		case <-timeout:
			t.Fatalf("no %q frame within 10s", typ)
		}
	}
}

func TestReadmeWalkthroughs(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"make run", "make test", readmeListenerA, readmeListenerB, readmeBroadcast,
		readmeDelivered, readmePresence, readmeChatCLI, readmeChatTurn} {
		if !strings.Contains(string(readme), s) {
			t.Errorf("README.md no longer contains %q: keep the README and this test in step", s)
		}
	}

	srvBin := e2eBinary(t)
	cliBin := filepath.Join(t.TempDir(), "wsedge-cli")
	if out, err := exec.Command("go", "build", "-o", cliBin, "../wsedge-cli").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/wsedge-cli: %v\n%s", err, out)
	}
	addr := testenv.FreeAddr(t)
	srv := exec.Command(srvBin)
	// What `make run` sets, on a free port.
	srv.Env = append(os.Environ(), "DEBUG=1", "LOG_FORMAT=text", "ADDR="+addr, "ADMIN_ADDR=127.0.0.1:0", "LOCAL_MODEL_DELAY=1ms")
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		_ = srv.Wait()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/health/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not answer /health/")
		}
		time.Sleep(20 * time.Millisecond)
	}
	local := func(cmdline string) []string {
		args := strings.Fields(strings.TrimPrefix(cmdline, "go run ./cmd/wsedge-cli "))
		for i, a := range args {
			args[i] = strings.Replace(a, "127.0.0.1:8000", addr, 1)
		}
		return args
	}

	a := startCLI(t, cliBin, local(readmeListenerA)...)
	a.expect(t, "connected")
	b := startCLI(t, cliBin, local(readmeListenerB)...)
	b.expect(t, "connected")
	// Both hellos are processed once presence counts two members.
	for {
		a.send(t, readmePresence)
		_, m := a.expect(t, "presence")
		if m["count"] == float64(2) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.send(t, readmeBroadcast)
	for _, p := range []*cliProc{a, b} {
		if line, _ := p.expect(t, "session_message"); line != readmeDelivered {
			t.Errorf("delivered %s, README says %s", line, readmeDelivered)
		}
	}
	a.send(t, readmePresence)
	_, m := a.expect(t, "presence")
	byType, _ := m["by_type"].(map[string]any)
	if m["count"] != float64(2) || byType["ios"] != float64(1) || byType["web"] != float64(1) {
		t.Errorf("presence %v", m)
	}
	a.send(t, `{"type":"anything"}`)
	a.expect(t, "echo")

	// Chat, with a session listener on the thread.
	watcher := startCLI(t, cliBin, "-hello", "agent,web", "ws://"+addr+"/ws/session/demo-thread/")
	watcher.expect(t, "connected")
	watcher.send(t, readmePresence)
	watcher.expect(t, "presence")
	c := startCLI(t, cliBin, local(readmeChatCLI)...)
	c.send(t, readmeChatTurn)
	_, started := c.expect(t, "session_started")
	if started["thread_id"] != "demo-thread" || started["session_id"] != "demo-thread" {
		t.Errorf("session_started %v", started)
	}
	_, tok := c.expect(t, "token")
	if s, _ := tok["content"].(string); s == "" {
		t.Errorf("empty token %v", tok)
	}
	c.expect(t, "end")
	watcher.expect(t, "session_message")
}
