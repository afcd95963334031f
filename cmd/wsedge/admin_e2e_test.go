package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/text"
)

// ADMIN_TOKEN and ADMIN_TOKEN_FILE: the file wins and loses its trailing
// newline; with DEBUG=0 a weak token is refused like a weak SECRET_KEY.
func TestAdminTokenConfig(t *testing.T) {
	dir := t.TempDir()
	strong := "Zx8-Lq3Vr7Nw1Kp5Jt9Hs2Gm6Fd4Cb0Ya"
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // the token, or a fragment of the error
		err  bool
	}{
		{"none", cfgProd(), "", false},
		{"variable", cfgProd("ADMIN_TOKEN", strong), strong, false},
		{"file wins", cfgProd("ADMIN_TOKEN", "ignored", "ADMIN_TOKEN_FILE", file("a", strong+"\n")), strong, false},
		{"CRLF trimmed", cfgProd("ADMIN_TOKEN_FILE", file("b", strong+"\r\n")), strong, false},
		{"missing file", cfgProd("ADMIN_TOKEN_FILE", filepath.Join(dir, "nope")), "ADMIN_TOKEN_FILE", true},
		{"empty file", cfgProd("ADMIN_TOKEN_FILE", file("c", "\n")), "is empty", true},
		{"weak with DEBUG=0", cfgProd("ADMIN_TOKEN", "secret"), "ADMIN_TOKEN (or ADMIN_TOKEN_FILE) is shorter", true},
		{"weak file with DEBUG=0", cfgProd("ADMIN_TOKEN_FILE", file("d", "change-me-please-change-me-please-1234\n")), "placeholder", true},
		{"weak with DEBUG=1", map[string]string{"DEBUG": "1", "ADMIN_TOKEN": "secret"}, "secret", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err {
				if msg := cfgLoadErr(t, tc.env); !strings.Contains(msg, tc.want) {
					t.Fatalf("error %q lacks %q", msg, tc.want)
				}
				return
			}
			if got := cfgLoad(t, tc.env).AdminToken; got != tc.want {
				t.Fatalf("token %q, want %q", got, tc.want)
			}
		})
	}
	// A secret: never a flag (it would show in the process list).
	if _, err := parseFlags([]string{"-admin-token", strong}, cfgEnv(nil)); err == nil {
		t.Error("-admin-token accepted as a flag")
	}
}

// docExample is a curl command of docs/ADMIN.md and the answer shown after it.
type docExample struct{ cmd, want string }

// adminDocExamples reads docs/ADMIN.md's "sh" blocks that start with curl,
// each followed by a "json" block.
func adminDocExamples(t *testing.T) []docExample {
	t.Helper()
	src, err := os.ReadFile("../../docs/ADMIN.md")
	if err != nil {
		t.Fatal(err)
	}
	var bs []codeBlock
	doc := goldmark.DefaultParser().Parse(text.NewReader(src))
	_ = ast.Walk(doc, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if fb, ok := n.(*ast.FencedCodeBlock); ok && entering {
			var b strings.Builder
			for i := 0; i < fb.Lines().Len(); i++ {
				seg := fb.Lines().At(i)
				b.Write(seg.Value(src))
			}
			bs = append(bs, codeBlock{lang: string(fb.Language(src)), text: strings.TrimSpace(b.String())})
		}
		return ast.WalkContinue, nil
	})
	var out []docExample
	for i, b := range bs {
		if b.lang != "sh" || !strings.HasPrefix(b.text, "curl ") {
			continue
		}
		if i+1 >= len(bs) || bs[i+1].lang != "json" {
			t.Fatalf("docs/ADMIN.md: %q is not followed by its json answer", b.text)
		}
		out = append(out, docExample{b.text, bs[i+1].text})
	}
	if len(out) < 8 {
		t.Fatalf("docs/ADMIN.md: only %d curl examples found", len(out))
	}
	return out
}

// The curl examples of docs/ADMIN.md, run as written (only the port
// changed) against the real binary with DEBUG=0 and the token in a file,
// with four clients connected; each answer must match the one shown.
// Clients that are told to reconnect answer the close and do not come back,
// so the counts in the examples are exact.
func TestAdminDocExamples(t *testing.T) {
	examples := adminDocExamples(t)
	dir := t.TempDir()
	raw := make([]byte, 36)
	_, _ = rand.Read(raw)
	token := base64.StdEncoding.EncodeToString(raw)
	// As `openssl rand -base64 48 | tr -d '\n' > admin-token`, plus the
	// newline an editor or kubectl would leave.
	if err := os.WriteFile(filepath.Join(dir, "admin-token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startBinary(t, dir, cleanEnv("SECRET_KEY="+cfgSecret, "ALLOWED_HOSTS=example.com", "ALLOW_MISSING_ORIGIN=1",
		"ADMIN_TOKEN_FILE=admin-token", "INSTANCE_ID=edge-1", "EVENT_LOOPS=1", "LOG_FORMAT=text"))

	var closed atomic.Int64
	const clients = 4
	for i := 0; i < clients; i++ {
		conn, br, _, err := ws.Dial(context.Background(), "ws://"+s.addr+"/ws/session/admin-doc/")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		var r io.Reader = conn
		if br != nil {
			r = io.MultiReader(br, conn)
		}
		_ = wsutil.WriteClientText(conn, []byte(`{"type":"hello","user_type":"listener","client_type":"web"}`))
		_ = wsutil.WriteClientText(conn, []byte(`{"type":"presence"}`))
		ready := make(chan struct{})
		go func() {
			hinted := false
			for {
				h, err := ws.ReadHeader(r)
				if err != nil {
					return
				}
				p := make([]byte, h.Length)
				if _, err := io.ReadFull(r, p); err != nil {
					return
				}
				switch {
				case h.OpCode == ws.OpText && strings.Contains(string(p), `"type":"presence"`):
					close(ready)
				case h.OpCode == ws.OpText && strings.Contains(string(p), `"type":"reconnect"`):
					hinted = true
				case h.OpCode == ws.OpClose:
					code, _ := ws.ParseCloseFrameData(p)
					if !hinted || code != ws.StatusGoingAway {
						t.Errorf("close %d without a reconnect hint first (%v)", code, hinted)
					}
					_ = wsutil.WriteClientMessage(conn, ws.OpClose, p)
					closed.Add(1)
					return
				}
			}
		}()
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			t.Fatal("client did not join")
		}
	}

	status := func() map[string]any {
		req, _ := http.NewRequest("GET", "http://"+s.admin+"/admin/status", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
			t.Fatalf("status: %d %v", resp.StatusCode, err)
		}
		return m
	}
	// With one event loop, a shed or drain of A sockets over T closes
	// ceil(A/steps) of them at once (steps: one per 100 ms of T) and the rest
	// later; every example starts once those are closed and gone.
	wantClosed := int64(0)
	for _, ex := range examples {
		deadline := time.Now().Add(10 * time.Second)
		for {
			m := status()
			if closed.Load() == wantClosed && m["connections"] == float64(clients-closed.Load()) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("before %q: status %v with %d clients closed, want %d", ex.cmd, m, closed.Load(), wantClosed)
			}
			time.Sleep(20 * time.Millisecond)
		}
		cmd := exec.Command("sh", "-c", strings.ReplaceAll(ex.cmd, "127.0.0.1:9090", s.admin))
		cmd.Dir = dir
		cmd.Env = cleanEnv()
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", ex.cmd, err)
		}
		var got, want map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%s: answer %q is not JSON", ex.cmd, out)
		}
		if err := json.Unmarshal([]byte(ex.want), &want); err != nil {
			t.Fatalf("docs/ADMIN.md: %q is not JSON", ex.want)
		}
		for _, k := range []string{"version", "uptime_seconds"} {
			if _, ok := want[k]; ok {
				if reflect.TypeOf(got[k]) != reflect.TypeOf(want[k]) {
					t.Errorf("%s: %s is %v, the docs show %v", ex.cmd, k, got[k], want[k])
				}
				got[k] = want[k]
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s\n got %s\nwant %s", ex.cmd, out, ex.want)
		}
		if a, ok := got["accepted"].(float64); ok && a > 0 {
			steps := max(1, (int64(got["over_ms"].(float64))+99)/100)
			wantClosed += (int64(a) + steps - 1) / steps
		}
	}
	metrics := s.get(t, "http://"+s.admin+"/metrics")
	for _, want := range []string{
		`wsedge_admin_requests_total{code="409",endpoint="shed"} 1`,
		`wsedge_admin_requests_total{code="400",endpoint="shed"} 1`,
		`wsedge_shed_sockets_total{reason="shed"} 3`,
		`wsedge_shed_sockets_total{reason="drain"} 1`,
		`wsedge_draining 0`,
		`wsedge_shedding 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if code := s.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// Every access-control setting is documented in docs/SECURITY.md, and every
// admin API setting in docs/ADMIN.md.
func TestDocsListSettings(t *testing.T) {
	for doc, keys := range map[string][]string{
		"SECURITY.md": {"SESSION_TOKEN_SECRET", "SESSION_TOKEN_PUBLIC_KEY", "SESSION_TOKEN_AUDIENCE", "TOKEN_EXPIRY_GRACE",
			"TRUSTED_PROXIES", "MAX_CONNECTIONS_PER_IP", "CONNECT_RATE_PER_IP", "CONNECT_BURST_PER_IP", "MAX_TRACKED_IPS",
			"MAX_SESSION_MEMBERS", "SESSION_BROADCAST_RATE", "SESSION_BROADCAST_BURST"},
		"ADMIN.md": {"ADMIN_ADDR", "ADMIN_TOKEN", "ADMIN_TOKEN_FILE", "DRAIN_SPREAD", "RECONNECT_JITTER"},
	} {
		b, err := os.ReadFile("../../docs/" + doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			known := false
			for _, s := range settings {
				known = known || s.key == k
			}
			if !known {
				t.Errorf("%s is not a setting any more: drop it here", k)
			}
			if !strings.Contains(string(b), "`"+k+"`") {
				t.Errorf("docs/%s does not document `%s`", doc, k)
			}
		}
	}
}
