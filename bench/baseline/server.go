// Package server is the goroutine-per-connection baseline that wsedge is
// measured against. It speaks the session protocol of PROTOCOL.md §1 on one
// node the way a typical Go team would write it: net/http accepts, gobwas/ws
// upgrades, each socket has a reader goroutine and a writer goroutine fed by
// a bounded channel, and sessions live in a mutex-protected map.
//
// It is deliberately conventional, not deliberately slow: frames are encoded
// once per broadcast and shared by every member's queue.
package baseline

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options are the baseline's limits; zero values take the defaults that
// PROTOCOL.md names.
type Options struct {
	// HelloTimeout closes a connection that has not said hello (4001).
	HelloTimeout time.Duration
	// MaxMessage is the largest accepted message; larger closes with 1009.
	MaxMessage int
	// QueueBytes caps each connection's outbound queue. A member whose
	// queue would pass the cap is a slow consumer and is closed with 1013,
	// so a stalled reader costs at most this much memory.
	QueueBytes int
	// WriteTimeout bounds one socket write; a peer that accepts no bytes
	// for this long is dropped.
	WriteTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.HelloTimeout <= 0 {
		o.HelloTimeout = 30 * time.Second
	}
	if o.MaxMessage <= 0 {
		o.MaxMessage = 1 << 20
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = 1 << 20
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	return o
}

// Server holds the sessions and metrics of one baseline node.
type Server struct {
	opts Options
	log  *slog.Logger

	mu       sync.RWMutex
	sessions map[string]map[*conn]struct{}

	reg         *prometheus.Registry
	conns       prometheus.Gauge
	deliveries  prometheus.Counter
	slowClosed  prometheus.Counter
	connsOpened prometheus.Counter
}

// New builds a server. Its metrics live in a private registry (with the Go
// and process collectors) served by AdminHandler.
func New(opts Options, log *slog.Logger) *Server {
	s := &Server{
		opts:     opts.withDefaults(),
		log:      log,
		sessions: make(map[string]map[*conn]struct{}),
		reg:      prometheus.NewRegistry(),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "baseline_connections", Help: "Open WebSocket connections.",
		}),
		connsOpened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "baseline_connections_opened_total", Help: "Upgraded WebSocket connections.",
		}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "baseline_broadcast_deliveries_total", Help: "session_message frames queued to members.",
		}),
		slowClosed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "baseline_slow_consumer_closes_total", Help: "Connections closed with 1013 because their queue was full.",
		}),
	}
	s.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		s.conns, s.connsOpened, s.deliveries, s.slowClosed,
	)
	return s
}

// Handler serves /health/ and /ws/session/<id>/.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/health/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("/ws/session/", s.serveSession)
	return mux
}

// AdminHandler serves /metrics.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	return mux
}

// ValidSessionID reports whether id is 1–128 chars of [A-Za-z0-9_.:-].
func ValidSessionID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '_', c == '.', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

func (s *Server) serveSession(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/ws/session/"), "/")
	if !ValidSessionID(id) {
		http.Error(w, `{"error":"invalid_request","message":"bad session id"}`, http.StatusBadRequest)
		return
	}
	nc, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		// UpgradeHTTP has already answered with the HTTP error.
		return
	}
	c := &conn{
		srv:         s,
		nc:          nc,
		br:          rw.Reader,
		id:          newConnID(),
		session:     id,
		wake:        make(chan struct{}, 1),
		done:        make(chan struct{}),
		connectedAt: time.Now().Unix(),
	}
	s.conns.Inc()
	s.connsOpened.Inc()
	go c.writeLoop()
	c.readLoop()
	s.leave(c)
	if !c.closing {
		// Nothing more is owed to the peer: stop the writer now. When a close
		// frame is queued the writer stops itself after sending it (bounded
		// by WriteTimeout).
		c.shutdown(0)
	}
	s.conns.Dec()
}

func newConnID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Server) join(c *conn) {
	s.mu.Lock()
	m := s.sessions[c.session]
	if m == nil {
		m = make(map[*conn]struct{})
		s.sessions[c.session] = m
	}
	m[c] = struct{}{}
	s.mu.Unlock()
}

func (s *Server) leave(c *conn) {
	s.mu.Lock()
	if m := s.sessions[c.session]; m != nil {
		delete(m, c)
		if len(m) == 0 {
			delete(s.sessions, c.session)
		}
	}
	s.mu.Unlock()
}

// broadcast queues one pre-encoded frame to every member of the session.
// Holding the read lock while queueing keeps per-sender order: two
// broadcasts from one reader goroutine are queued one after the other.
func (s *Server) broadcast(session string, frame []byte) {
	s.mu.RLock()
	n := 0
	for m := range s.sessions[session] {
		m.send(frame)
		n++
	}
	s.mu.RUnlock()
	s.deliveries.Add(float64(n))
}

type presenceMember struct {
	ConnectionID string `json:"connection_id"`
	UserType     string `json:"user_type"`
	ClientType   string `json:"client_type"`
	ConnectedAt  int64  `json:"connected_at"`
	LastSeen     int64  `json:"last_seen"`
}

type presenceReply struct {
	Type      string           `json:"type"`
	SessionID string           `json:"session_id"`
	Count     int              `json:"count"`
	ByType    map[string]int   `json:"by_type"`
	Members   []presenceMember `json:"members"`
}

func (s *Server) presence(session string) []byte {
	now := time.Now().Unix()
	rep := presenceReply{Type: "presence", SessionID: session, ByType: map[string]int{}, Members: []presenceMember{}}
	s.mu.RLock()
	for m := range s.sessions[session] {
		rep.Members = append(rep.Members, presenceMember{
			ConnectionID: m.id, UserType: m.userType, ClientType: m.clientType,
			ConnectedAt: m.connectedAt, LastSeen: now,
		})
		rep.ByType[m.clientType]++
	}
	s.mu.RUnlock()
	rep.Count = len(rep.Members)
	b, _ := json.Marshal(rep)
	return b
}

type outFrame struct {
	b []byte
	// last marks a close frame: the writer closes the socket after it.
	last bool
}

type conn struct {
	srv     *Server
	nc      net.Conn
	br      *bufio.Reader
	id      string
	session string

	// The outbound queue is a slice under a mutex rather than a channel:
	// a buffered channel big enough for a burst would be allocated up front
	// for every idle connection.
	qmu    sync.Mutex
	queue  []outFrame
	spare  []outFrame
	qbytes int
	wake   chan struct{}

	done      chan struct{}
	closeOnce sync.Once
	closeCode ws.StatusCode
	closing   bool // reader only: a close frame is queued

	// Set once by the reader before join; read by others only after join
	// (under the server lock), so no further synchronisation is needed.
	helloed     bool
	userType    string
	clientType  string
	connectedAt int64
}

// send queues a frame without blocking. A queue past its cap means the
// peer does not keep up: it is closed with 1013 rather than stalling the
// broadcaster or growing without bound.
func (c *conn) send(b []byte) {
	if !c.enqueue(outFrame{b: b}) {
		c.srv.slowClosed.Inc()
		c.shutdown(statusTryAgainLater)
	}
}

func (c *conn) enqueue(f outFrame) bool {
	c.qmu.Lock()
	if c.qbytes+len(f.b) > c.srv.opts.QueueBytes && !f.last {
		c.qmu.Unlock()
		return false
	}
	c.queue = append(c.queue, f)
	c.qbytes += len(f.b)
	c.qmu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

// closeWith queues a close frame behind what is already queued, so an error
// frame sent just before it arrives first.
func (c *conn) closeWith(code ws.StatusCode, reason string) {
	c.closing = true
	c.enqueue(outFrame{b: ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason))), last: true})
}

// shutdown stops the writer; a non-zero code is sent as a best-effort close
// frame (used when the queue has no room for one).
func (c *conn) shutdown(code ws.StatusCode) {
	c.closeOnce.Do(func() {
		c.closeCode = code
		close(c.done)
	})
}

func (c *conn) writeLoop() {
	bw := bufio.NewWriterSize(c.nc, 4096)
	defer c.nc.Close()
	for {
		select {
		case <-c.wake:
		case <-c.done:
			if c.closeCode != 0 {
				_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
				_ = ws.WriteFrame(c.nc, ws.NewCloseFrame(ws.NewCloseFrameBody(c.closeCode, "")))
			}
			return
		}
		c.qmu.Lock()
		batch := c.queue
		c.queue, c.spare = c.spare[:0], nil
		c.qbytes = 0
		c.qmu.Unlock()
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
		for i, f := range batch {
			batch[i] = outFrame{}
			if _, err := bw.Write(f.b); err != nil {
				c.shutdown(0)
				return
			}
			if f.last {
				_ = bw.Flush()
				c.shutdown(0)
				return
			}
		}
		if err := bw.Flush(); err != nil {
			c.shutdown(0)
			return
		}
		c.qmu.Lock()
		if c.spare == nil && cap(batch) <= 64 {
			// Reuse small batch slices; a burst's big one goes to the GC.
			c.spare = batch[:0]
		}
		c.qmu.Unlock()
	}
}

func (c *conn) sendJSON(v any) {
	b, _ := json.Marshal(v)
	c.send(ws.MustCompileFrame(ws.NewTextFrame(b)))
}

func (c *conn) sendError(code, msg string) {
	c.sendJSON(struct {
		Type    string `json:"type"`
		Error   string `json:"error"`
		Message string `json:"message"`
	}{"error", code, msg})
}

var errClosed = errors.New("closed")

// readLoop reads messages until the connection ends. It returns after it
// has queued whatever close frame the protocol requires.
func (c *conn) readLoop() {
	c.send(ws.MustCompileFrame(ws.NewTextFrame(fmt.Appendf(nil,
		`{"type":"connected","session_id":%q,"connection_id":%q,"user_type_required":true}`, c.session, c.id))))
	_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.opts.HelloTimeout))

	var msg []byte
	var msgOp ws.OpCode
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !c.helloed {
				c.closeWith(4001, "hello timeout")
			} else if errors.Is(err, ws.ErrHeaderLengthMSB) {
				c.closeWith(ws.StatusProtocolError, "")
			}
			return
		}
		switch {
		case !h.Masked, h.Rsv != 0, h.OpCode.IsReserved(),
			h.OpCode.IsControl() && (!h.Fin || h.Length > 125),
			h.OpCode == ws.OpContinuation && msg == nil,
			h.OpCode.IsData() && msg != nil:
			c.closeWith(ws.StatusProtocolError, "")
			return
		}
		if h.Length > int64(c.srv.opts.MaxMessage-len(msg)) {
			c.closeWith(ws.StatusMessageTooBig, "")
			return
		}
		buf := make([]byte, int(h.Length))
		if _, err := io.ReadFull(c.br, buf); err != nil {
			return
		}
		ws.Cipher(buf, h.Mask, 0)
		switch h.OpCode {
		case ws.OpPing:
			c.send(ws.MustCompileFrame(ws.NewPongFrame(buf)))
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			code, _ := ws.ParseCloseFrameData(buf)
			if code.Empty() {
				code = ws.StatusNormalClosure
			}
			c.closeWith(code, "")
			return
		case ws.OpText, ws.OpBinary:
			msgOp = h.OpCode
			msg = append([]byte{}, buf...)
		case ws.OpContinuation:
			msg = append(msg, buf...)
		}
		if !h.Fin {
			continue
		}
		full := msg
		msg = nil
		if msgOp == ws.OpText && !utf8.Valid(full) {
			c.closeWith(ws.StatusInvalidFramePayloadData, "")
			return
		}
		if err := c.handle(msgOp, full); err != nil {
			return
		}
	}
}

type inbound struct {
	Type       *json.RawMessage `json:"type"`
	UserType   *json.RawMessage `json:"user_type"`
	ClientType *json.RawMessage `json:"client_type"`
	Msg        json.RawMessage  `json:"msg"`
	Data       json.RawMessage  `json:"data"`
}

func rawString(r *json.RawMessage) (string, bool) {
	if r == nil {
		return "", false
	}
	var s string
	if err := json.Unmarshal(*r, &s); err != nil {
		return "", false
	}
	return s, true
}

// handle acts on one complete message; a non-nil error ends the connection.
func (c *conn) handle(op ws.OpCode, p []byte) error {
	if op == ws.OpBinary {
		c.sendError("text_required", "binary frames are not accepted")
		return c.requireHello()
	}
	if !json.Valid(p) {
		c.sendError("invalid_json", "message is not valid JSON")
		return c.requireHello()
	}
	var in inbound
	isObject := json.Unmarshal(p, &in) == nil
	typ, _ := rawString(in.Type)
	if !isObject {
		typ = ""
	}
	if !c.helloed {
		if typ != "hello" {
			c.sendError("hello_required", `the first message must be {"type":"hello",...}`)
			c.closeWith(4001, "hello required")
			return errClosed
		}
		ut, ok := rawString(in.UserType)
		if !ok || ut == "" || len(ut) > 64 {
			c.sendError("user_type_required", "hello needs a non-empty user_type")
			c.closeWith(4001, "user_type required")
			return errClosed
		}
		ct := "unknown"
		if in.ClientType != nil && string(*in.ClientType) != "null" {
			s, ok := rawString(in.ClientType)
			if !ok || len(s) > 64 {
				c.sendError("hello_required", "client_type must be a string of at most 64 bytes")
				c.closeWith(4001, "bad hello")
				return errClosed
			}
			if s != "" {
				ct = s
			}
		}
		c.userType, c.clientType, c.helloed = ut, ct, true
		_ = c.nc.SetReadDeadline(time.Time{})
		c.srv.join(c)
		return nil
	}
	switch typ {
	case "hello":
		c.sendError("hello_already_received", "hello was already received")
	case "presence":
		c.send(ws.MustCompileFrame(ws.NewTextFrame(c.srv.presence(c.session))))
	case "broadcast":
		msg, data := nullIfEmpty(in.Msg), nullIfEmpty(in.Data)
		ut, _ := json.Marshal(c.userType)
		ct, _ := json.Marshal(c.clientType)
		b := make([]byte, 0, 80+len(ut)+len(ct)+len(msg)+len(data))
		b = append(b, `{"type":"session_message","user_type":`...)
		b = append(b, ut...)
		b = append(b, `,"client_type":`...)
		b = append(b, ct...)
		b = append(b, `,"msg":`...)
		b = append(b, msg...)
		b = append(b, `,"data":`...)
		b = append(b, data...)
		b = append(b, '}')
		c.srv.broadcast(c.session, ws.MustCompileFrame(ws.NewTextFrame(b)))
	default:
		b := make([]byte, 0, len(p)+24)
		b = append(b, `{"type":"echo","data":`...)
		b = append(b, strings.TrimSpace(string(p))...)
		b = append(b, '}')
		c.send(ws.MustCompileFrame(ws.NewTextFrame(b)))
	}
	return nil
}

// requireHello closes a connection whose first message was not a hello.
func (c *conn) requireHello() error {
	if c.helloed {
		return nil
	}
	c.closeWith(4001, "hello required")
	return errClosed
}

func nullIfEmpty(r json.RawMessage) []byte {
	if len(r) == 0 {
		return []byte("null")
	}
	return r
}

// statusTryAgainLater (1013) is registered with IANA but not named by gobwas/ws.
const statusTryAgainLater ws.StatusCode = 1013
