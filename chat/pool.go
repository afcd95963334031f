package chat

import (
	"errors"
	"sync"
	"sync/atomic"
)

var (
	errPoolFull    = errors.New("chat: worker pool full")
	errPoolClosing = errors.New("chat: shutting down")
)

// pool runs chat turns on a fixed set of worker goroutines, off the event
// loop. Admission is a non-blocking take of one of workers+queue slots: at
// the cap a turn is refused at once (the client gets busy) rather than
// waiting, so the event loop never blocks and memory stays bounded. An
// admitted turn holds its slot until it ends; the jobs channel has as many
// places as there are slots, so handing it over never blocks either.
// Idle workers cost one parked goroutine each (a few KiB of stack).
type pool struct {
	slots   chan struct{}
	jobs    chan *turn
	quit    chan struct{}
	running atomic.Int64

	stopOnce sync.Once
	mu       sync.Mutex
	closing  bool
	turns    sync.WaitGroup // admitted turns
	workers  sync.WaitGroup
}

func newPool(workers, queue int, run func(*turn)) *pool {
	p := &pool{
		slots: make(chan struct{}, workers+queue),
		jobs:  make(chan *turn, workers+queue),
		quit:  make(chan struct{}),
	}
	p.workers.Add(workers)
	for range workers {
		go func() {
			defer p.workers.Done()
			for {
				select {
				case t := <-p.jobs:
					p.running.Add(1)
					run(t)
					p.running.Add(-1)
					p.release()
				case <-p.quit:
					return
				}
			}
		}()
	}
	return p
}

// admit reserves a slot for one turn without blocking.
func (p *pool) admit() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return errPoolClosing
	}
	select {
	case p.slots <- struct{}{}:
		p.turns.Add(1)
		return nil
	default:
		return errPoolFull
	}
}

// submit hands an admitted turn to the workers; it never blocks.
func (p *pool) submit(t *turn) { p.jobs <- t }

func (p *pool) release() {
	<-p.slots
	p.turns.Done()
}

// close refuses new turns; turns already admitted still run.
func (p *pool) close() {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
}

// idle is closed when every admitted turn has ended (after close).
func (p *pool) idle() <-chan struct{} {
	ch := make(chan struct{})
	go func() { p.turns.Wait(); close(ch) }()
	return ch
}

// stop ends the workers; a second call does nothing.
func (p *pool) stop() {
	p.stopOnce.Do(func() {
		close(p.quit)
		p.workers.Wait()
	})
}
