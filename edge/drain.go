package edge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wsedge/wsedge/edge/wsframe"
	"github.com/wsedge/wsedge/internal/backoff"
	"github.com/wsedge/wsedge/internal/wire"
)

// Graceful shutdown: BeginDrain turns health to 503 and refuses upgrades;
// Shutdown then hands every socket a reconnect hint and a 1001 close, spread
// over DrainSpread, and stops the engine.

// Draining reports whether a graceful shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// BeginDrain turns /health/ to 503 and refuses new upgrades, leaving open
// sockets alone, so that the load balancer stops routing here while work in
// flight (chat turns) finishes. Shutdown does it too.
func (s *Server) BeginDrain() {
	if s.draining.CompareAndSwap(false, true) {
		s.log.Info("draining: health 503, new upgrades refused", "connections", s.open.Load())
	}
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

// drainSockets sends every WebSocket a reconnect hint and a 1001 close, in
// batches spread over DrainSpread, then waits for sockets to go (or ctx).
func (s *Server) drainSockets(ctx context.Context) {
	steps := 10
	if s.cfg.DrainSpread <= 0 || s.wsOpen.Load() == 0 {
		steps = 1
	}
	for i := 0; i < steps; i++ {
		last := i == steps-1
		for _, ls := range s.allLoops() {
			ls.run(func() { ls.closeBatch(i, steps, last) })
		}
		if !last {
			select {
			case <-ctx.Done():
				return
			case <-time.After(s.cfg.DrainSpread / time.Duration(steps)):
			}
		}
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for s.wsOpen.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// closeBatch closes the step-th share of the loop's WebSockets (all that are
// left on the last step).
func (ls *loopState) closeBatch(step, steps int, last bool) {
	s := ls.srv
	var batch []*conn
	for _, c := range ls.conns {
		if c.state == stWS && (last || int(c.idx)%steps == step) {
			batch = append(batch, c)
		}
	}
	for _, c := range batch {
		after := backoff.Spread(0, s.cfg.ReconnectJitter).Milliseconds()
		c.send(wsframe.Text(wire.Reconnect(after)))
		c.closeWS(wsframe.CloseGoingAway, "server shutting down", false)
	}
	ls.flush()
}
