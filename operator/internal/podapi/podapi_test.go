package podapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The answers as docs/ADMIN.md shows them (the server's contract).
const (
	docStatus = `{"instance":"edge-1","version":"v1.0.0","connections":4,"sessions":1,"capacity":100000,"ready":true,"draining":false,"shedding":0,"uptime_seconds":12.5}`
	docShed   = `{"accepted":2,"over_ms":0}`
)

func TestStatus(t *testing.T) {
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"unauthorized"}`)
			return
		}
		_, _ = io.WriteString(w, docStatus)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	c := New(time.Second)
	st, err := c.Status(context.Background(), addr, "tok")
	if err != nil {
		t.Fatal(err)
	}
	want := Status{Instance: "edge-1", Version: "v1.0.0", Connections: 4, Sessions: 1, Capacity: 100000, Ready: true, UptimeSeconds: 12.5}
	if st != want {
		t.Fatalf("got %+v", st)
	}

	bad := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"wrong token", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) }, "HTTP 401"},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "<html>") }, "invalid character"},
		{"wrong type", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `{"connections":"many"}`) }, "cannot unmarshal"},
		{"negative", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `{"connections":-1}`) }, "negative"},
		{"huge body", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"instance":"`+strings.Repeat("x", maxBody)+`"}`)
		}, "body over"},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://example.invalid/", http.StatusFound)
		}, "HTTP 302"},
		{"hangs", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-block:
			case <-r.Context().Done(): // the client gave up
			}
		}, "deadline exceeded"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			s := httptest.NewServer(tc.handler)
			defer s.Close()
			_, err := New(200*time.Millisecond).Status(context.Background(), strings.TrimPrefix(s.URL, "http://"), "tok")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestShed(t *testing.T) {
	var busy atomic.Bool
	var body atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		body.Store(string(b))
		if r.Method != http.MethodPost || r.URL.Path != "/admin/shed" || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if busy.Load() {
			w.WriteHeader(http.StatusConflict)
			_, _ = io.WriteString(w, `{"error":"shed_in_progress"}`)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, docShed)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	c := New(time.Second)
	res, err := c.Shed(context.Background(), addr, "tok", ShedRequest{Count: 2, OverMS: 0, JitterMS: 2000})
	if err != nil || res != (ShedResult{Accepted: 2}) {
		t.Fatalf("%+v %v", res, err)
	}
	if got := body.Load().(string); got != `{"count":2,"over_ms":0,"jitter_ms":2000}` {
		t.Fatalf("body %s", got)
	}
	busy.Store(true)
	if _, err := c.Shed(context.Background(), addr, "tok", ShedRequest{Count: 1}); !errors.Is(err, ErrShedRunning) {
		t.Fatalf("409: %v", err)
	}
}

func TestResidentMemory(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "# HELP process_resident_memory_bytes x\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 1.2345678e+08\ngo_goroutines 12\n")
	}))
	defer srv.Close()
	n, err := New(time.Second).ResidentMemory(context.Background(), strings.TrimPrefix(srv.URL, "http://"))
	if err != nil || n != 123456780 {
		t.Fatalf("%d %v", n, err)
	}
}

func TestPodIP(t *testing.T) {
	p := &corev1.Pod{}
	p.Name = "a"
	if _, err := (PodIP{}).Resolve(p, 9090); err == nil {
		t.Fatal("no IP resolved")
	}
	p.Status.PodIP = "fd00::1"
	if a, err := (PodIP{}).Resolve(p, 9090); err != nil || a != "[fd00::1]:9090" {
		t.Fatalf("%q %v", a, err)
	}
}

// Each never runs more than limit at once and runs every index.
func TestEachBound(t *testing.T) {
	var cur, peak, n atomic.Int32
	Each(50, 4, func(int) {
		c := cur.Add(1)
		for {
			p := peak.Load()
			if c <= p || peak.CompareAndSwap(p, c) {
				break
			}
		}
		time.Sleep(time.Millisecond)
		cur.Add(-1)
		n.Add(1)
	})
	if n.Load() != 50 || peak.Load() > 4 {
		t.Fatalf("ran %d, peak %d", n.Load(), peak.Load())
	}
}
