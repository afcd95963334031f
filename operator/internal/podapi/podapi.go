// Package podapi is the operator's HTTP contract with wsedge pods: their
// admin listener's GET /admin/status and POST /admin/shed, with a bearer
// token, bounded bodies, per-request timeouts and bounded concurrency.
package podapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Status is a pod's GET /admin/status answer.
type Status struct {
	Instance    string `json:"instance"`
	Version     string `json:"version"`
	Connections int64  `json:"connections"`
	Sessions    int64  `json:"sessions"`
	Capacity    int64  `json:"capacity"`
	Ready       bool   `json:"ready"`
	Draining    bool   `json:"draining"`
	// Shedding is how many sockets a shed or drain in progress has still
	// to close.
	Shedding      int64   `json:"shedding"`
	UptimeSeconds float64 `json:"uptime_seconds"`
}

// ShedRequest asks a pod to close Count sockets over OverMS, each after a
// reconnect hint of at most JitterMS.
type ShedRequest struct {
	Count    int64 `json:"count"`
	OverMS   int64 `json:"over_ms"`
	JitterMS int64 `json:"jitter_ms"`
}

// ShedResult is the pod's 202 answer.
type ShedResult struct {
	Accepted int64 `json:"accepted"`
	OverMS   int64 `json:"over_ms"`
}

// ErrShedRunning is a 409: the pod is already shedding.
var ErrShedRunning = errors.New("a shed is already running")

// Resolver maps a pod to the host:port of its admin listener. The
// production one is PodIP; tests map fake pods to local processes.
type Resolver interface {
	Resolve(pod *corev1.Pod, adminPort int32) (string, error)
}

// PodIP resolves to the pod's IP and the admin port.
type PodIP struct{}

// Resolve implements Resolver.
func (PodIP) Resolve(pod *corev1.Pod, port int32) (string, error) {
	if pod.Status.PodIP == "" {
		return "", fmt.Errorf("pod %s has no IP", pod.Name)
	}
	return net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(port))), nil
}

// maxBody bounds what is read from a pod: a status is a few hundred bytes;
// /metrics is read line by line up to maxMetrics.
const (
	maxBody    = 64 << 10
	maxMetrics = 4 << 20
)

// Client calls pods. Its zero value is not usable; use New.
type Client struct {
	http    *http.Client
	timeout time.Duration
}

// New returns a client whose every request ends within timeout.
func New(timeout time.Duration) *Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
	}
	// No redirects: a pod that redirects is misbehaving, and the token
	// must never be sent anywhere else.
	return &Client{timeout: timeout, http: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

func (c *Client) do(ctx context.Context, method, url, token string, body []byte) (*http.Response, context.CancelFunc, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return resp, cancel, nil
}

// Status reads GET /admin/status from addr (host:port).
func (c *Client) Status(ctx context.Context, addr, token string) (Status, error) {
	var st Status
	resp, cancel, err := c.do(ctx, http.MethodGet, "http://"+addr+"/admin/status", token, nil)
	if err != nil {
		return st, fmt.Errorf("status %s: %w", addr, err)
	}
	defer cancel()
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return st, fmt.Errorf("status %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status %s: HTTP %d", addr, resp.StatusCode)
	}
	if len(data) > maxBody {
		return st, fmt.Errorf("status %s: body over %d bytes", addr, maxBody)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("status %s: %w", addr, err)
	}
	if st.Connections < 0 || st.Capacity < 0 || st.Sessions < 0 || st.Shedding < 0 {
		return st, fmt.Errorf("status %s: negative count", addr)
	}
	return st, nil
}

// Shed posts a shed request; ErrShedRunning when the pod already sheds.
func (c *Client) Shed(ctx context.Context, addr, token string, r ShedRequest) (ShedResult, error) {
	var res ShedResult
	body, _ := json.Marshal(r)
	resp, cancel, err := c.do(ctx, http.MethodPost, "http://"+addr+"/admin/shed", token, body)
	if err != nil {
		return res, fmt.Errorf("shed %s: %w", addr, err)
	}
	defer cancel()
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return res, fmt.Errorf("shed %s: %w", addr, err)
	}
	switch resp.StatusCode {
	case http.StatusAccepted:
	case http.StatusConflict:
		return res, fmt.Errorf("shed %s: %w", addr, ErrShedRunning)
	default:
		return res, fmt.Errorf("shed %s: HTTP %d", addr, resp.StatusCode)
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return res, fmt.Errorf("shed %s: %w", addr, err)
	}
	return res, nil
}

// ResidentMemory reads process_resident_memory_bytes from the pod's
// /metrics (the Prometheus text format); 0 with an error when absent.
func (c *Client) ResidentMemory(ctx context.Context, addr string) (int64, error) {
	resp, cancel, err := c.do(ctx, http.MethodGet, "http://"+addr+"/metrics", "", nil)
	if err != nil {
		return 0, fmt.Errorf("metrics %s: %w", addr, err)
	}
	defer cancel()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics %s: HTTP %d", addr, resp.StatusCode)
	}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, maxMetrics))
	sc.Buffer(make([]byte, 0, 64<<10), 64<<10)
	const name = "process_resident_memory_bytes "
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(line[len(name):])[0], 64)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("metrics %s: bad %q", addr, line)
		}
		return int64(v), nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("metrics %s: %w", addr, err)
	}
	return 0, fmt.Errorf("metrics %s: no process_resident_memory_bytes", addr)
}

// Each runs f for every index in [0, n) with at most limit at once, and
// returns when all are done.
func Each(n, limit int, f func(i int)) {
	if limit < 1 {
		limit = 1
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(i)
		}()
	}
	wg.Wait()
}
