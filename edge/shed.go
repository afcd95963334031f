package edge

import (
	"cmp"
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/edge/wsframe"
)

// Shedding closes open WebSockets with a jittered reconnect hint and close
// 1001, spread over a period, so that the clients reconnect elsewhere (to a
// less loaded pod, or to any pod when this one drains). Three callers share
// the code: POST /admin/shed (some sockets), POST /admin/drain (all, and the
// instance stops taking new ones) and SIGTERM (all, then the process ends).
//
// Work happens in steps of shedTick: a step is one mailbox task per loop,
// closing that loop's share for the step. One goroutine per shed paces the
// steps; no goroutine or timer per socket.

// shedTick is the time between two steps of a shed: fine enough that a
// spread looks like a rate to the clients (and to the operator's eviction
// budget), coarse enough that a long spread costs few mailbox tasks
// (600 s: 6,000 per loop).
const shedTick = 100 * time.Millisecond

// MaxShedSpread bounds the spread of a shed or drain asked on the admin API.
const MaxShedSpread = 10 * time.Minute

// Shed errors the admin API maps to HTTP answers.
var (
	ErrShedInProgress = errors.New("a shed or drain is in progress")
	ErrShuttingDown   = errors.New("the server is shutting down")
)

// shedReason labels wsedge_shed_sockets_total.
const (
	shedReasonShed  = "shed"
	shedReasonDrain = "drain"
)

// shedJob is one shed: which sockets, over how long, with which hint.
type shedJob struct {
	all    bool // every WebSocket (drain); else count of them
	count  int
	over   time.Duration
	jitter time.Duration
	reason string // metric label
	close  string // close frame reason
}

// shedRun is the shed in progress; shedState.mu guards the pointer.
type shedRun struct {
	drain  bool // an admin drain (DELETE /admin/drain stops it)
	cancel context.CancelFunc
	done   chan struct{}
}

// shedState is the server's shedding state: the run in progress, the
// sockets it has still to close, and the admin drain mark.
type shedState struct {
	mu          sync.Mutex
	run         *shedRun
	terminating bool // SIGTERM: the draining mark can no longer be lifted

	pending atomic.Int64 // sockets the current run has still to close
	sockets *prometheus.CounterVec
}

func newShedState(reg prometheus.Registerer) *shedState {
	st := &shedState{
		sockets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsedge_shed_sockets_total",
			Help: "WebSockets sent a reconnect hint and closed 1001 by a shed (admin API) or a drain (admin API or SIGTERM).",
		}, []string{"reason"}),
	}
	reg.MustRegister(st.sockets, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wsedge_shedding", Help: "WebSockets a shed or drain in progress has still to close.",
	}, func() float64 { return float64(st.pending.Load()) }))
	for _, r := range []string{shedReasonShed, shedReasonDrain} {
		st.sockets.WithLabelValues(r)
	}
	return st
}

// ShedRequest asks to close Count WebSockets, or Fraction (0 < F ≤ 1) of
// them, over Over, each with a reconnect hint uniform in [0, Jitter].
type ShedRequest struct {
	Count    int
	Fraction float64
	Over     time.Duration
	Jitter   time.Duration
}

// Shed starts closing the sockets req asks for and returns how many it took
// on (at most the WebSockets open). The oldest sockets of each event loop go
// first, and every loop gives up its share in proportion to its sockets: a
// client that just moved here (after an earlier shed or a scale-up) is the
// last to be moved again, and no loop is emptied while another stays full.
// A shed with sockets still to close, or a drain, running →
// ErrShedInProgress.
func (s *Server) Shed(ctx context.Context, req ShedRequest) (int, error) {
	st := s.shed
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.terminating {
		return 0, ErrShuttingDown
	}
	if st.run != nil {
		// A shed whose sockets are all closed only waits for its last
		// step's flush: "shedding":0 means a new shed is accepted.
		if st.run.drain || st.pending.Load() > 0 {
			return 0, ErrShedInProgress
		}
		st.stopLocked()
	}
	parts, total, err := s.shedCandidates(ctx)
	if err != nil {
		return 0, err
	}
	n := req.Count
	if req.Fraction > 0 {
		n = int(math.Ceil(req.Fraction * float64(total)))
	}
	n = min(n, total)
	if n <= 0 {
		return 0, nil
	}
	st.start(s, false, parts, shedJob{count: n, over: req.Over, jitter: req.Jitter, reason: shedReasonShed, close: "shed"})
	return n, nil
}

// Drain marks the instance draining (/ready/ and /health/ 503, upgrades
// refused) and closes every WebSocket over over. A shed in progress gives
// way to it; a drain in progress → ErrShedInProgress.
func (s *Server) Drain(ctx context.Context, over, jitter time.Duration) (int, error) {
	st := s.shed
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.terminating {
		return 0, ErrShuttingDown
	}
	if st.run != nil {
		if st.run.drain {
			return 0, ErrShedInProgress
		}
		st.stopLocked()
	}
	if s.draining.CompareAndSwap(false, true) {
		s.log.Info("draining (admin): ready 503, new upgrades refused", "connections", s.wsOpen.Load(), "spread", over)
	}
	// Upgrades already check the mark: every socket open from here on is
	// among the candidates.
	parts, total, err := s.shedCandidates(ctx)
	if err != nil {
		return 0, err
	}
	st.start(s, true, parts, shedJob{all: true, count: total, over: over, jitter: jitter, reason: shedReasonDrain, close: "drain"})
	return total, nil
}

// Undrain lifts the admin drain mark and stops the drain's closing of
// sockets, if still going: the instance accepts again. During a SIGTERM
// shutdown → ErrShuttingDown.
func (s *Server) Undrain() error {
	st := s.shed
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.terminating {
		return ErrShuttingDown
	}
	if st.run != nil && st.run.drain {
		st.stopLocked()
	}
	if s.draining.CompareAndSwap(true, false) {
		s.log.Info("drain ended (admin): accepting again", "connections", s.wsOpen.Load())
	}
	return nil
}

// terminate is SIGTERM: the draining mark stays from here on and no new
// shed starts; with stop, the shed or drain in progress ends too (its
// sockets are then the shutdown's).
func (st *shedState) terminate(stop bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.terminating = true
	if stop {
		st.stopLocked()
	}
}

// stopLocked cancels the run in progress and waits for it to end (it ends
// at its next step, at most shedTick away).
func (st *shedState) stopLocked() {
	r := st.run
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
	st.run = nil
	st.pending.Store(0)
}

// start runs job in the background (one goroutine per shed, whatever its
// size); st.mu is held.
func (st *shedState) start(s *Server, drain bool, parts []*loopShed, job shedJob) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &shedRun{drain: drain, cancel: cancel, done: make(chan struct{})}
	st.run = r
	st.pending.Store(int64(job.count))
	go func() {
		s.runShed(ctx, parts, job)
		cancel()
		// done first: stopLocked holds mu while it waits for it.
		close(r.done)
		st.mu.Lock()
		if st.run == r {
			st.run = nil
			st.pending.Store(0)
		}
		st.mu.Unlock()
	}()
}

// loopShed is one loop's part of a shed: its candidates, oldest first, and
// how many of them it must close. Only that loop touches it once the
// candidates are collected (the mailbox orders the accesses).
type loopShed struct {
	ls    *loopState
	cands []*conn
	share int
	next  int // candidates consumed
}

// candidate is an open WebSocket and when it upgraded, copied on the loop
// so that sorting happens off it.
type candidate struct {
	c  *conn
	at int64
}

// shedCandidates asks every loop for its open WebSockets and sorts each
// loop's oldest first. A loop only copies pointers and times; the caller
// (off-loop) waits for the answers and sorts.
func (s *Server) shedCandidates(ctx context.Context) ([]*loopShed, int, error) {
	loops := s.allLoops()
	got := make([][]candidate, len(loops))
	ch := make(chan struct{}, len(loops))
	posted := 0
	for i, ls := range loops {
		if ls.run(func() {
			var cs []candidate
			for _, c := range ls.conns {
				if c.state == stWS {
					cs = append(cs, candidate{c, c.openedAt})
				}
			}
			got[i] = cs
			ch <- struct{}{}
		}) {
			posted++
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for range posted {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, 0, errors.New("shed: event loops did not answer in 5s")
		}
	}
	parts := make([]*loopShed, len(loops))
	total := 0
	for i, cs := range got {
		slices.SortFunc(cs, func(a, b candidate) int { return cmp.Compare(a.at, b.at) })
		p := &loopShed{ls: loops[i], cands: make([]*conn, len(cs))}
		for j := range cs {
			p.cands[j] = cs[j].c
		}
		parts[i] = p
		total += len(cs)
	}
	return parts, total, nil
}

// setShares splits n over parts in proportion to their candidates (largest
// remainder), so that the shares add up to min(n, candidates).
func setShares(parts []*loopShed, n int) {
	total := 0
	for _, p := range parts {
		total += len(p.cands)
	}
	if total == 0 {
		return
	}
	n = min(n, total)
	given := 0
	rem := make([]int, len(parts))
	for i, p := range parts {
		p.share = n * len(p.cands) / total
		rem[i] = n * len(p.cands) % total
		given += p.share
	}
	for given < n {
		best := -1
		for i, p := range parts {
			if p.share < len(p.cands) && (best < 0 || rem[i] > rem[best]) {
				best = i
			}
		}
		parts[best].share++
		rem[best] = -1
		given++
	}
}

// runShed paces job's steps: step j (of ceil(over/shedTick), at least one)
// runs at j*over/steps and brings each loop to ceil(share*(j+1)/steps)
// candidates consumed. A drain's last step also closes any WebSocket the
// candidates missed. It returns when the steps posted so far have run, so
// that no step of it runs after it returns, even when ctx ends early.
func (s *Server) runShed(ctx context.Context, parts []*loopShed, job shedJob) {
	setShares(parts, job.count)
	steps := 1
	if job.over > 0 {
		steps = int((job.over + shedTick - 1) / shedTick)
	}
	defer s.shedBarrier(parts)
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for j := 0; j < steps; j++ {
		if j > 0 {
			timer.Reset(time.Until(start.Add(job.over * time.Duration(j) / time.Duration(steps))))
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		last := j == steps-1
		for _, p := range parts {
			upTo := (p.share*(j+1) + steps - 1) / steps
			p.ls.run(func() { s.shedStep(p, upTo, last && job.all, &job) })
		}
	}
}

// shedBarrier waits until every loop has run what was posted before it.
func (s *Server) shedBarrier(parts []*loopShed) {
	ch := make(chan struct{}, len(parts))
	for _, p := range parts {
		if !p.ls.run(func() { ch <- struct{}{} }) {
			ch <- struct{}{}
		}
	}
	for range parts {
		select {
		case <-ch:
		case <-s.done:
			return
		}
	}
}

// shedStep runs on p's loop: it closes candidates until upTo of them are
// consumed (a candidate that closed on its own counts as consumed), and
// with everything set, every WebSocket left on the loop.
func (s *Server) shedStep(p *loopShed, upTo int, everything bool, job *shedJob) {
	closed := 0
	consumed := 0
	for p.next < upTo && p.next < len(p.cands) {
		c := p.cands[p.next]
		p.cands[p.next] = nil
		p.next++
		consumed++
		if c.state == stWS {
			c.hintAndClose(job.jitter, wsframe.CloseGoingAway, job.close)
			closed++
		}
	}
	if everything {
		for _, c := range p.ls.conns {
			if c.state == stWS {
				c.hintAndClose(job.jitter, wsframe.CloseGoingAway, job.close)
				closed++
			}
		}
	}
	s.shed.pending.Add(-int64(consumed))
	if closed > 0 {
		s.shed.sockets.WithLabelValues(job.reason).Add(float64(closed))
	}
	p.ls.flush()
}

// closeAll is SIGTERM's part: every WebSocket, over over, with the usual
// hint; it returns once the last step has run (or ctx ends).
func (s *Server) closeAll(ctx context.Context, over, jitter time.Duration, reason string) {
	s.shed.terminate(true)
	parts, total, err := s.shedCandidates(ctx)
	if err != nil {
		s.log.Warn("drain", "err", err)
	}
	s.shed.pending.Store(int64(total))
	s.runShed(ctx, parts, shedJob{all: true, count: total, over: over, jitter: jitter, reason: shedReasonDrain, close: reason})
	s.shed.pending.Store(0)
}
