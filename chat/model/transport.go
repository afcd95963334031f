package model

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"golang.org/x/net/http2"
)

// TransportOptions are the HTTP/1.1 settings of the transport every Bedrock
// stream shares (apply them to an awshttp.BuildableClient, which keeps the
// SDK's defaults and AWS_CA_BUNDLE; NewBedrock adds HTTP/2 on top, see
// newUpstream). streams is the most streams open at once (CHAT_WORKERS):
// HTTP/1.1 carries one stream per connection, so at most streams connections
// per host (a turn never waits for one) and as many kept idle for the next
// turns; idle connections close after 90 s.
func TransportOptions(streams int) func(*http.Transport) {
	return func(t *http.Transport) {
		t.MaxConnsPerHost = max(streams, 1)
		t.MaxIdleConnsPerHost = max(streams, 1)
		t.MaxIdleConns = max(streams, 1)
		t.IdleConnTimeout = 90 * time.Second
	}
}

// upstream is the one RoundTripper of every Bedrock stream.
//
// HTTPS endpoints are tried with HTTP/2 first (golang.org/x/net/http2): all
// streams are multiplexed on a few connections, a new one only when the
// server's SETTINGS_MAX_CONCURRENT_STREAMS is reached, and one dial at a
// time per host, which the connections' waiters share. net/http's own
// HTTP/2 (negotiated from its HTTP/1.1 dial path) dials a connection for
// every request that finds no free stream, so a burst of turns opened
// hundreds of connections and paid a TLS handshake each (bench/cmd/chat-bench, mode
// h2std). A connection silent for 15 s is pinged and dropped if the ping is
// not answered within 5 s, so a dead connection does not hold every stream
// multiplexed on it.
//
// An endpoint that does not offer h2 by ALPN is remembered and served by h1,
// net/http's HTTP/1.1 transport (also for plain http:// endpoints). No hidden
// retries: the HTTP/2 client resends a request only when the server refused
// its stream unprocessed (REFUSED_STREAM, GOAWAY), bounded by the turn's
// deadline; a stream that started is never retried.
type upstream struct {
	h1 *http.Transport
	h2 *http2.Transport

	mu   sync.Mutex
	noH2 map[string]bool // host:port that negotiated no h2
}

// errNoH2 is returned by the HTTP/2 dial when the server chose another
// protocol; the request then goes over HTTP/1.1.
var errNoH2 = errors.New("endpoint does not offer HTTP/2")

// newUpstream builds the shared client from the SDK's buildable client (its
// transport carries the CA bundle and the SDK's TLS defaults).
func newUpstream(b *awshttp.BuildableClient) *http.Client {
	h1 := b.GetTransport()
	u := &upstream{h1: h1, noH2: map[string]bool{}}
	tlsCfg := h1.TLSClientConfig.Clone()
	if tlsCfg == nil {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	u.h2 = &http2.Transport{
		TLSClientConfig: tlsCfg,
		ReadIdleTimeout: 15 * time.Second,
		PingTimeout:     5 * time.Second,
		DialTLSContext: func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
			cfg = cfg.Clone()
			cfg.NextProtos = []string{http2.NextProtoTLS, "http/1.1"}
			conn, err := (&tls.Dialer{NetDialer: dialer, Config: cfg}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if conn.(*tls.Conn).ConnectionState().NegotiatedProtocol != http2.NextProtoTLS {
				_ = conn.Close()
				u.mu.Lock()
				u.noH2[addr] = true
				u.mu.Unlock()
				return nil, errNoH2
			}
			return conn, nil
		},
	}
	return &http.Client{Transport: u}
}

func (u *upstream) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "https" {
		u.mu.Lock()
		skip := u.noH2[hostPort(r)]
		u.mu.Unlock()
		if !skip {
			resp, err := u.h2.RoundTrip(r)
			if !errors.Is(err, errNoH2) {
				return resp, err
			}
		}
	}
	return u.h1.RoundTrip(r)
}

func hostPort(r *http.Request) string {
	if r.URL.Port() != "" {
		return r.URL.Host
	}
	return net.JoinHostPort(r.URL.Hostname(), "443")
}
