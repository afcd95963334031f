package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// Deps are the pieces the edge serves with; cmd/wsedge builds them.
type Deps struct {
	Hub      *Hub
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
	hub      *Hub
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
	if d.Hub == nil || d.Broker == nil || d.Presence == nil || d.Logger == nil || d.Registry == nil {
		return nil, errors.New("edge: hub, broker, presence, logger and registry are required")
	}
	var files *console.Files
	if cfg.Console {
		var err error
		if files, err = console.Load(); err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
	}
	d.Hub.SetBroker(d.Broker)
	// Registered with history off too: every documented counter has a
	// series from the start (at zero).
	hm := newHistoryMetrics(d.Registry)
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
		hub:         d.Hub,
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
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(gnetLogger{s.log}),
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

// Draining reports whether a graceful shutdown or an admin drain has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// BeginDrain turns /health/ to 503 and refuses new upgrades, leaving open
// sockets alone, so that the load balancer stops routing here while work in
// flight (chat turns) finishes. Shutdown does it too. From here on the mark
// stays: DELETE /admin/drain cannot lift it.
func (s *Server) BeginDrain() {
	s.shed.terminate(false)
	if s.draining.CompareAndSwap(false, true) {
		s.log.Info("draining: health 503, new upgrades refused", "connections", s.open.Load())
	}
}

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

// Shutdown drains gracefully: /health/ answers 503, new upgrades are refused,
// every socket gets a reconnect hint and a 1001 close, spread over
// DrainSpread, and the engine stops when all are gone or at ctx's deadline
// (and at DrainTimeout at the latest).
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.shutting.CompareAndSwap(false, true) {
		<-s.done
		return nil
	}
	s.BeginDrain()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DrainTimeout)
	defer cancel()
	s.log.Info("closing sockets", "connections", s.open.Load(), "spread", s.cfg.DrainSpread)
	s.drainSockets(ctx)
	s.apiWG.Wait()
	s.stopOnce.Do(func() { close(s.done) })
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer stopCancel()
	var err error
	select {
	case <-s.booted:
		err = s.engine.Stop(stopCtx)
	default:
	}
	for _, ls := range s.allLoops() {
		ls.stopped.Store(true)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("edge stop: %w", err)
	}
	return nil
}

// gnetLogger routes gnet's own logs to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "component", "gnet") }
