package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/text"

	"github.com/wsedge/wsedge/internal/testenv"
)

// The README, followed word for word: its code blocks are taken from the
// Markdown (not copied here) and run as written, against `make run`, with
// only the port changed (a free one instead of 8000, which a developer's own
// `make run` may hold).

// codeBlock is one fenced code block of the README.
type codeBlock struct {
	lang, text string
}

// readmeSections maps each heading of README.md to the fenced code blocks
// under it, in order.
func readmeSections(t *testing.T) (map[string][]codeBlock, []byte) {
	t.Helper()
	src, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := goldmark.DefaultParser().Parse(text.NewReader(src))
	sections := map[string][]codeBlock{}
	heading := ""
	for n := doc.FirstChild(); n != nil; n = n.NextSibling() {
		switch n := n.(type) {
		case *ast.Heading:
			var b strings.Builder
			for c := n.FirstChild(); c != nil; c = c.NextSibling() {
				if tx, ok := c.(*ast.Text); ok {
					b.Write(tx.Value(src))
				}
			}
			heading = b.String()
		case *ast.FencedCodeBlock:
			var b strings.Builder
			for i := 0; i < n.Lines().Len(); i++ {
				seg := n.Lines().At(i)
				b.Write(seg.Value(src))
			}
			sections[heading] = append(sections[heading], codeBlock{lang: string(n.Language(src)), text: b.String()})
		}
	}
	return sections, src
}

// blocks returns a section's code blocks, checking their languages: the test
// knows the walkthrough's shape, the README owns every command and line.
func blocks(t *testing.T, sections map[string][]codeBlock, heading string, langs ...string) []string {
	t.Helper()
	bs := sections[heading]
	if len(bs) != len(langs) {
		t.Fatalf("README section %q has %d code blocks, the test expects %d (%v): keep them in step", heading, len(bs), len(langs), langs)
	}
	out := make([]string, len(bs))
	for i, b := range bs {
		if b.lang != langs[i] {
			t.Fatalf("README section %q block %d is %q, want %q", heading, i+1, b.lang, langs[i])
		}
		out[i] = strings.TrimSpace(b.text)
	}
	return out
}

// commands splits a shell block into command lines (joining "\" line
// continuations, dropping comments).
func commands(block string) []string {
	var out []string
	cur := ""
	for _, l := range strings.Split(block, "\n") {
		if i := strings.Index(l, " #"); i >= 0 && !strings.Contains(l[:i], "'") {
			l = l[:i]
		}
		l = strings.TrimSpace(l)
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		if cur+l != "" {
			out = append(out, cur+l)
		}
		cur = ""
	}
	return out
}

// cliProc is a README command running in its own process group, with its
// stdin and stdout lines.
type cliProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

// startCommand runs a README command line (e.g. `go run ./cmd/wsedge-cli …`)
// from the repository root, as a reader would type it.
func startCommand(t *testing.T, cmdline string) *cliProc {
	t.Helper()
	f := strings.Fields(cmdline)
	cmd := exec.Command(f[0], f[1:]...)
	cmd.Dir = "../.."
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = testLog{t}
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
		// EOF on stdin ends wsedge-cli, and with it `go run`; the group
		// kill is for a client that hangs.
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	return p
}

func (p *cliProc) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

// expect returns the next line that has the given type. `go run` compiles
// first, hence the generous bound.
func (p *cliProc) expect(t *testing.T, typ string) (string, map[string]any) {
	t.Helper()
	timeout := time.After(60 * time.Second)
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
			t.Fatalf("no %q frame within 60s", typ)
		}
	}
}

// The quick start, the session and chat walkthroughs and the HTTP examples,
// replayed from the README's code blocks.
func TestReadmeWalkthroughs(t *testing.T) {
	sections, readme := readmeSections(t)
	quick := commands(blocks(t, sections, "Quick start", "sh")[0])
	if len(quick) != 2 || quick[0] != "make run" || quick[1] != "make test" {
		t.Fatalf("quick start commands %q, want make run and make test", quick)
	}
	sess := blocks(t, sections, "Session walkthrough", "sh", "sh", "json", "json", "json")
	listenerA, listenerB, broadcast, delivered, presence := sess[0], sess[1], sess[2], sess[3], sess[4]
	chatBlocks := blocks(t, sections, "Chat walkthrough", "sh", "sh", "json")
	chatListener, chatCLI, chatTurn := chatBlocks[0], chatBlocks[1], chatBlocks[2]
	httpCmds := commands(blocks(t, sections, "HTTP", "sh")[0])

	// `make run`, on a free port; Ctrl-C (SIGINT to its process group, as a
	// terminal sends it) must end it without make reporting an error.
	addr := testenv.FreeAddr(t)
	local := func(s string) string { return strings.ReplaceAll(s, "127.0.0.1:8000", addr) }
	run := exec.Command("make", strings.Fields(quick[0])[1:]...)
	run.Dir = "../.."
	// Not the outer make's job server or level (make test runs this test).
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			run.Env = append(run.Env, kv)
		}
	}
	run.Env = append(run.Env, "ADDR="+addr, "ADMIN_ADDR="+testenv.FreeAddr(t), "LOCAL_MODEL_DELAY=1ms")
	run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	runOut := &testenv.Buffer{}
	run.Stdout, run.Stderr = runOut, io.MultiWriter(runOut, testLog{t})
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	runExited := make(chan error, 1)
	go func() { runExited <- run.Wait() }()
	t.Cleanup(func() { _ = syscall.Kill(-run.Process.Pid, syscall.SIGKILL) })
	deadline := time.Now().Add(3 * time.Minute) // make run builds first
	for {
		if resp, err := http.Get("http://" + addr + "/health/"); err == nil {
			resp.Body.Close()
			break
		}
		select {
		case err := <-runExited:
			t.Fatalf("make run exited: %v\n%s", err, runOut)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("make run did not answer /health/")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// make links the commit in (make build does the same).
	if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		if want := "revision=" + strings.TrimSpace(string(head)); !strings.Contains(runOut.String(), want) {
			t.Errorf("make run's binary does not log %s:\n%s", want, runOut)
		}
	}

	// Session walkthrough.
	a := startCommand(t, local(listenerA))
	a.expect(t, "connected")
	b := startCommand(t, local(listenerB))
	b.expect(t, "connected")
	// Both hellos are processed once presence counts two members.
	for {
		a.send(t, presence)
		_, m := a.expect(t, "presence")
		if m["count"] == float64(2) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.send(t, broadcast)
	for _, p := range []*cliProc{a, b} {
		if line, _ := p.expect(t, "session_message"); line != delivered {
			t.Errorf("delivered %s, README says %s", line, delivered)
		}
	}
	a.send(t, presence)
	_, m := a.expect(t, "presence")
	byType, _ := m["by_type"].(map[string]any)
	if m["count"] != float64(2) || byType["ios"] != float64(1) || byType["web"] != float64(1) {
		t.Errorf("presence %v", m)
	}
	// "Any other JSON message you type is echoed back …; a line that is not
	// JSON gets … invalid_json".
	if !strings.Contains(string(readme), `{"type":"echo","data":…}`) || !strings.Contains(string(readme), `{"type":"error","error":"invalid_json",…}`) {
		t.Error("README no longer describes echo and invalid_json as tested here")
	}
	a.send(t, `{"type":"anything"}`)
	if line, _ := a.expect(t, "echo"); line != `{"type":"echo","data":{"type":"anything"}}` {
		t.Errorf("echo %s", line)
	}
	a.send(t, `not json`)
	if _, m := a.expect(t, "error"); m["error"] != "invalid_json" {
		t.Errorf("non-JSON line answered %v", m)
	}

	// Chat walkthrough: the listener exactly as written must see the turn
	// (without -hello it would get hello_required instead).
	watcher := startCommand(t, local(chatListener))
	watcher.expect(t, "connected")
	for {
		watcher.send(t, presence)
		if _, m := watcher.expect(t, "presence"); m["count"] == float64(1) {
			break
		}
	}
	c := startCommand(t, local(chatCLI))
	c.send(t, chatTurn)
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

	// HTTP: the curl commands in order; the CSRF token of the second goes
	// where the third says <token-from-previous-request>.
	if len(httpCmds) != 3 {
		t.Fatalf("HTTP block has %d commands, want 3: %q", len(httpCmds), httpCmds)
	}
	curl := func(cmdline string) string {
		out, err := exec.Command("sh", "-c", local(cmdline)).Output()
		if err != nil {
			t.Fatalf("%s: %v", cmdline, err)
		}
		return string(out)
	}
	if out := curl(httpCmds[0]); strings.TrimSpace(out) != `{"status":"ok"}` {
		t.Errorf("health: %s", out)
	}
	var tokenResp map[string]string
	if err := json.Unmarshal([]byte(curl(httpCmds[1])), &tokenResp); err != nil || tokenResp["csrfToken"] == "" {
		t.Fatalf("csrf-token: %v %v", tokenResp, err)
	}
	if !strings.Contains(httpCmds[2], "<token-from-previous-request>") {
		t.Fatalf("history command no longer takes the token: %s", httpCmds[2])
	}
	hist := curl(strings.ReplaceAll(httpCmds[2], "<token-from-previous-request>", tokenResp["csrfToken"]))
	var turn map[string]string
	_ = json.Unmarshal([]byte(chatTurn), &turn)
	if !strings.Contains(hist, turn["message"]) {
		t.Errorf("history of demo-thread lacks the chat turn: %s", hist)
	}

	// Ctrl-C: the server drains and exits 0, and so does make.
	if err := syscall.Kill(-run.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-runExited:
		// make waits for its child, then ends by the signal itself, as a
		// Ctrl-C'd program should (the shell shows status 130, no message).
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.ProcessState.Sys().(syscall.WaitStatus).Signal() == syscall.SIGINT) {
			t.Errorf("make run after Ctrl-C: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("make run did not stop within 30s of SIGINT")
	}
	// A non-zero exit of the server would show as make's "*** [run] Error".
	if out := runOut.String(); strings.Contains(out, "Error") || strings.Contains(out, "***") || !strings.Contains(out, "stopped") {
		t.Errorf("make run did not stop cleanly after Ctrl-C:\n%s", out)
	}
}

// The README names the Go version go.mod requires.
func TestReadmeGoVersion(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("no go line in go.mod")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := "Go " + string(m[1]) + " or newer"; !bytes.Contains(readme, []byte(want)) {
		t.Fatalf("README does not say %q", want)
	}
}

// The README says, in its first screen, that TLS ends at the load balancer.
func TestReadmeFirstScreenTLS(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(readme), "\n", 31)
	first := strings.Join(lines[:min(30, len(lines))], "\n")
	if !strings.Contains(first, "TLS ends at the load balancer") {
		t.Fatal("the first 30 lines of README.md do not say that TLS ends at the load balancer")
	}
}

// Documents and comments name the original Django server, not by a nickname.
func TestDocsSayOriginal(t *testing.T) {
	re := regexp.MustCompile(`(?i)\bthe seed\b|\bseed's\b`)
	err := filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "bin" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !(strings.HasSuffix(path, ".md") || strings.HasSuffix(path, ".go") ||
			strings.HasSuffix(path, ".example") || strings.HasSuffix(path, ".service")) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, l := range strings.Split(string(b), "\n") {
			if re.MatchString(l) && !strings.Contains(l, "regexp.MustCompile") {
				t.Errorf("%s:%d says %q; say \"the original Django server\"", path, i+1, strings.TrimSpace(l))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
