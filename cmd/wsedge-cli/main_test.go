package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsedge/wsedge/bench/baseline"
	"github.com/wsedge/wsedge/internal/testenv"
)

// frames parses stdout: one JSON object per line.
func frames(t *testing.T, out string) []map[string]any {
	t.Helper()
	var fs []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("stdout line %q is not a JSON object: %v", l, err)
		}
		fs = append(fs, m)
	}
	return fs
}

func types(fs []map[string]any) string {
	var ts []string
	for _, f := range fs {
		s, _ := f["type"].(string)
		if s == "error" {
			s += ":" + f["error"].(string)
		}
		ts = append(ts, s)
	}
	return strings.Join(ts, ",")
}

func startBaseline(t *testing.T) string {
	t.Helper()
	s := baseline.New(baseline.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

func TestCLI(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		stdin string
		want  string // frame types on stdout, in order
		code  int
		close string // stderr must contain this
	}{
		{name: "hello, broadcast, presence, echo", args: []string{"-hello", "admin,web"},
			stdin: "{\"type\":\"broadcast\",\"msg\":\"hello\"}\n\n{\"type\":\"presence\"}\n[1]\n",
			want:  "connected,session_message,presence,echo", close: "closed: 1000"},
		{name: "user_type only", args: []string{"-hello", "bot"}, stdin: "{\"type\":\"presence\"}\n",
			want: "connected,presence"},
		{name: "no hello is refused", stdin: "{\"type\":\"broadcast\",\"msg\":1}\n",
			want: "connected,error:hello_required", code: 3, close: "closed: 4001"},
	}
	url := startBaseline(t) + "/ws/session/cli/"
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb testenv.Buffer
			args := append(append([]string{"-grace", "300ms"}, tc.args...), url)
			code := run(context.Background(), args, strings.NewReader(tc.stdin), &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, errb.String())
			}
			if got := types(frames(t, out.String())); got != tc.want {
				t.Fatalf("stdout frames %s, want %s\n%s", got, tc.want, out.String())
			}
			if !strings.Contains(errb.String(), tc.close) {
				t.Fatalf("stderr %q lacks %q", errb.String(), tc.close)
			}
		})
	}
}

// TestListenerSeesBroadcast is the README walkthrough: one CLI listens with
// stdin held open, another says hello and broadcasts.
func TestListenerSeesBroadcast(t *testing.T) {
	url := startBaseline(t) + "/ws/session/walk/"
	pr, pw := io.Pipe()
	var out, errb testenv.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), []string{"-hello", "agent,web", "-grace", "100ms", url}, pr, &out, &errb)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "connected") {
		if time.Now().After(deadline) {
			t.Fatalf("listener never connected: %s", errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Presence from the sender proves the listener's hello was handled
	// before the broadcast goes out.
	var sout, serr testenv.Buffer
	stdin := "{\"type\":\"presence\"}\n{\"type\":\"broadcast\",\"msg\":\"hello\"}\n"
	if code := run(context.Background(), []string{"-hello", "admin", "-grace", "300ms", url}, strings.NewReader(stdin), &sout, &serr); code != 0 {
		t.Fatalf("sender exit %d: %s", code, serr.String())
	}
	if fs := frames(t, sout.String()); fs[1]["count"] != float64(2) {
		t.Fatalf("presence %v, want count 2", fs[1])
	}
	for !strings.Contains(out.String(), "session_message") {
		if time.Now().After(deadline) {
			t.Fatalf("listener got no broadcast: %s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	pw.Close()
	if code := <-done; code != 0 {
		t.Fatalf("listener exit %d: %s", code, errb.String())
	}
	fs := frames(t, out.String())
	if got := types(fs); got != "connected,session_message" {
		t.Fatalf("listener frames %s", got)
	}
	if fs[1]["user_type"] != "admin" || fs[1]["msg"] != "hello" {
		t.Fatalf("broadcast %v", fs[1])
	}
}

func TestHelloFlag(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{in: "admin,web", want: `{"client_type":"web","type":"hello","user_type":"admin"}`},
		{in: "admin", want: `{"type":"hello","user_type":"admin"}`},
		{in: ",web", bad: true},
	} {
		b, err := helloJSON(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && string(b) != tc.want) {
			t.Errorf("helloJSON(%q) = %s, %v", tc.in, b, err)
		}
	}
}

// The built client: -h documents both routes and exits 0; a missing URL is
// a usage error (2).
func TestCLIUsage(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "wsedge-cli")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"-h"}, 0},
		{[]string{"-help"}, 0},
		{nil, 2},
		{[]string{"-nope", "ws://x/"}, 2},
	} {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, tc.args...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("wsedge-cli %v: exit %d, want %d", tc.args, code, tc.code)
		}
		for _, want := range []string{"/ws/session/<id>/", "/ws/chat/", "-hello", "-origin"} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("wsedge-cli %v usage lacks %q:\n%s", tc.args, want, stderr.String())
			}
		}
	}
}
