package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wsedge/wsedge/internal/testenv"
)

// The real binary in production mode without AUTH_API_KEY: it starts, warns
// that the API is open, and CHAT_API_MAX_BODY is the edge's body cap (the
// edge used to refuse anything over 64 KiB whatever it said).
func TestChatAPISettingsReachTheEdge(t *testing.T) {
	bin := e2eBinary(t)
	addr := testenv.FreeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "DEBUG=0", "SECRET_KEY=k3Jd9-q8Zr_2Lm4Xv7Tn0Wb6Yc1Ps5Hg", "ALLOWED_HOSTS=example.com",
		"AUTH_API_KEY=", "LOG_FORMAT=text", "ADDR="+addr, "ADMIN_ADDR=127.0.0.1:0", "CHAT_API_MAX_BODY=256KiB")
	var logs testenv.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testenv.WaitFor(t, "/health/", 15*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/health/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "AUTH_API_KEY is not set") {
		t.Fatalf("no warning about the open API:\n%s", l)
	}

	resp, err := http.Get("http://" + addr + "/api/csrf-token/")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ CSRFToken string }
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || tok.CSRFToken == "" {
		t.Fatalf("csrf token: %v %+v", err, tok)
	}
	post := func(size int) (int, string) {
		t.Helper()
		body := `{"thread_id":"no-such-thread","pad":"` + strings.Repeat("p", size) + `"}`
		req, _ := http.NewRequest("POST", "http://"+addr+"/api/thread/history", strings.NewReader(body))
		req.Header.Set("X-CSRFToken", tok.CSRFToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %d bytes: %v", size, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := post(100 << 10); status != 404 || !strings.Contains(body, "thread_not_found") {
		t.Fatalf("100 KiB body under CHAT_API_MAX_BODY=256KiB: %d %s", status, body)
	}
	if status, body := post(300 << 10); status != 413 || !strings.Contains(body, "too_large") {
		t.Fatalf("300 KiB body: %d %s", status, body)
	}
}
