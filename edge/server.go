package edge

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/edge/broker"
	"github.com/wsedge/wsedge/edge/console"
	"github.com/wsedge/wsedge/edge/presence"
	"github.com/wsedge/wsedge/internal/jointoken"
)

var _ gnet.EventHandler = (*Server)(nil)

// Deps are the pieces the edge serves with; cmd/wsedge builds them.
type Deps struct {
	// Broker carries broadcasts; New starts it with the server's hub as its
	// Handler.
	Broker   broker.Broker
	Presence presence.Store
	// OpenChat serves /ws/chat/; nil answers 404.
	OpenChat OpenChat
	// API serves /api/*, off the event loops; nil answers 404.
	API      APIHandler
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// History is the broker's session history; nil turns it off, and every
	// frame stays as without it (PROTOCOL.md §1.7).
	History broker.History
	// Tokens, when set, makes join tokens required on /ws/session/.
	Tokens *jointoken.Verifier
}

// Server is the gnet engine and everything its loops share.
type Server struct {
	gnet.BuiltinEventEngine

	cfg      Config
	log      *slog.Logger
	metrics  *metrics
	refusals *refusalLog
	hub      *hub
	presence presence.Store
	broker   broker.Broker
	openChat OpenChat
	api      APIHandler
	console  *console.Files // nil unless Config.Console
	tokens   *jointoken.Verifier
	ips      *ipTable
	sessions *sessionTable

	history   broker.History
	histQueue chan historyJob // served by HistoryConcurrency workers
	hmetrics  *historyMetrics

	presenceSem  chan struct{}
	presenceBufs sync.Pool // *[]byte, for presence frames
	apiSem       chan struct{}

	engine   gnet.Engine
	booted   chan struct{}
	loopsMu  sync.Mutex
	loops    map[gnet.EventLoop]*loopState
	open     atomic.Int64 // sockets open
	wsOpen   atomic.Int64 // of which upgraded (open or closing)
	draining atomic.Bool  // SIGTERM or admin drain: /ready/ 503, upgrades refused
	shed     *shedState
	started  time.Time
	shutting atomic.Bool
	stopOnce sync.Once
	done     chan struct{}
	apiWG    sync.WaitGroup
}

// New validates cfg and builds a server; Serve runs it.
func New(cfg Config, d Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("edge config: %w", err)
	}
	if d.Broker == nil || d.Presence == nil || d.Logger == nil || d.Registry == nil {
		return nil, errors.New("edge: broker, presence, logger and registry are required")
	}
	var files *console.Files
	if cfg.Console {
		var err error
		if files, err = console.Load(); err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
	}
	// Registered with history off too: every documented counter has a
	// series from the start (at zero).
	hm := newHistoryMetrics(d.Registry)
	h, err := newHub(d.Broker)
	if err != nil {
		return nil, fmt.Errorf("edge: start broker: %w", err)
	}
	var hq chan historyJob
	if d.History != nil {
		hq = make(chan historyJob, cfg.HistoryBacklog)
	}
	s := &Server{
		histQueue:   hq,
		history:     d.History,
		hmetrics:    hm,
		console:     files,
		cfg:         cfg,
		log:         d.Logger,
		metrics:     newMetrics(d.Registry),
		refusals:    newRefusalLog(d.Logger, refusalLogBurst, time.Second),
		hub:         h,
		presence:    d.Presence,
		broker:      d.Broker,
		openChat:    d.OpenChat,
		api:         d.API,
		tokens:      d.Tokens,
		ips:         newIPTable(cfg.MaxTrackedIPs, cfg.MaxConnectionsPerIP, cfg.ConnectRatePerIP, cfg.ConnectBurstPerIP),
		sessions:    newSessionTable(),
		presenceSem: make(chan struct{}, cfg.PresenceConcurrency),
		apiSem:      make(chan struct{}, cfg.APIConcurrency),
		booted:      make(chan struct{}),
		loops:       make(map[gnet.EventLoop]*loopState),
		done:        make(chan struct{}),
		started:     time.Now(),
	}
	s.shed = newShedState(d.Registry)
	if hq != nil {
		for range cfg.HistoryConcurrency {
			go s.historyWorker()
		}
	}
	registerProbeMetrics(d.Registry, s)
	return s, nil
}

// Serve runs the engine until Shutdown (or a fatal listener error).
func (s *Server) Serve() error {
	opts := []gnet.Option{
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(s.cfg.EventLoops),
		gnet.WithReuseAddr(true),
		// A listener per event loop (SO_REUSEPORT): the kernel spreads new
		// connections over the loops and each loop accepts its own, so an
		// accept no longer hops from gnet's acceptor thread to a loop
		// through its task queue (an eventfd write, a wake-up and a futex
		// per connection): server CPU per connection fell by ~15 % in the
		// same churn run (docs/BENCHMARKS.md, "Connect path"). Port 0
		// would give every loop its own port, so it keeps one listener.
		gnet.WithReusePort(!strings.HasSuffix(s.cfg.Addr, ":0")),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(gnetLogger{s.log}),
	}
	// SO_REUSEPORT would let a second process on the same address share its
	// connections silently; a plain bind first fails as one listener did.
	if ln, err := net.Listen("tcp", s.cfg.Addr); err != nil {
		return fmt.Errorf("edge serve %s: %w", s.cfg.Addr, err)
	} else if err := ln.Close(); err != nil {
		return fmt.Errorf("edge serve %s: probe listener: %w", s.cfg.Addr, err)
	}
	go s.sweeper()
	err := gnet.Run(s, "tcp://"+s.cfg.Addr, opts...)
	s.stopOnce.Do(func() { close(s.done) })
	if err != nil {
		return fmt.Errorf("edge serve %s: %w", s.cfg.Addr, err)
	}
	return nil
}

// Ready is closed once the listener accepts connections.
func (s *Server) Ready() <-chan struct{} { return s.booted }

// OnBoot implements gnet.EventHandler.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.engine = eng
	close(s.booted)
	s.log.Info("edge listening", "addr", s.cfg.Addr, "event_loops", s.cfg.EventLoops)
	return gnet.None
}

func (s *Server) loopOf(gc gnet.Conn) *loopState {
	el := gc.EventLoop()
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	ls := s.loops[el]
	if ls == nil {
		ls = newLoopState(s, el)
		s.loops[el] = ls
	}
	return ls
}

func (s *Server) allLoops() []*loopState {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	out := make([]*loopState, 0, len(s.loops))
	for _, ls := range s.loops {
		out = append(out, ls)
	}
	return out
}

var tooManyConnections = func() []byte {
	body := `{"error":"unavailable","message":"too many connections"}`
	return []byte(fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body))
}()

// OnOpen implements gnet.EventHandler.
func (s *Server) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	if s.open.Add(1) > int64(s.cfg.MaxConnections) {
		s.open.Add(-1)
		s.metrics.rejected.WithLabelValues("max_connections").Inc()
		return tooManyConnections, gnet.Close
	}
	now := time.Now().UnixNano()
	c := &conn{gc: gc, ls: s.loopOf(gc), openedAt: now, lastRx: now, sidx: -1}
	gc.SetContext(c)
	c.ls.addConn(c)
	s.metrics.conns[routeHTTP].Inc()
	return nil, gnet.None
}

// OnClose implements gnet.EventHandler.
func (s *Server) OnClose(gc gnet.Conn, _ error) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok || c.state == stClosed {
		return gnet.None
	}
	s.open.Add(-1)
	wasWS := c.state != stHTTP
	c.leaveSession()
	if c.resuming {
		c.ls.endResume(c)
	}
	if c.acc != nil {
		s.releaseAccess(c)
	}
	c.state = stClosed
	c.dropPending()
	c.ls.removeConn(c)
	if c.chat != nil {
		c.chat.OnClose()
		c.chat = nil
	}
	s.metrics.conns[c.route].Dec()
	if wasWS {
		s.wsOpen.Add(-1)
		code := int(c.closeCode)
		if code == 0 {
			code = 1006
		}
		s.metrics.closed(c.route, code)
	}
	return gnet.None
}

// OnTraffic implements gnet.EventHandler.
func (s *Server) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.Close
	}
	c.lastRx = time.Now().UnixNano()
	if c.state == stHTTP {
		s.onHTTP(c)
	}
	if c.state == stWS || c.state == stClosing {
		s.onWS(c)
	}
	c.ls.flush()
	if c.closeTCP {
		return gnet.Close
	}
	return gnet.None
}

// gnetLogger routes gnet's own logs to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "component", "gnet") }
