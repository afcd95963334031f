package edge

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Graceful shutdown: BeginDrain turns health to 503 and refuses upgrades;
// Shutdown then hands every socket a reconnect hint and a 1001 close, spread
// over DrainSpread, and stops the engine.

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
// steps spread over DrainSpread (shed.go), then waits for sockets to go (or
// ctx).
func (s *Server) drainSockets(ctx context.Context) {
	s.closeAll(ctx, s.cfg.DrainSpread, s.cfg.ReconnectJitter, "server shutting down")
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
