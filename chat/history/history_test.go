package history_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wsedge/wsedge/chat/history"
	"github.com/wsedge/wsedge/internal/testenv"
)

func turn(i int) []history.Message {
	return []history.Message{
		{Role: "user", Content: fmt.Sprintf("q%d", i)},
		{Role: "assistant", Content: fmt.Sprintf("a%d", i), Escalated: i == 99},
	}
}

// storeContract is what every Store must do; run against each implementation.
func storeContract(t *testing.T, s history.Store) {
	ctx := context.Background()
	t.Run("unknown thread is empty", func(t *testing.T) {
		msgs, err := s.Recent(ctx, "nope", history.Window{Messages: 10})
		if err != nil || len(msgs) != 0 {
			t.Fatalf("%v %v", msgs, err)
		}
	})
	t.Run("order and limit", func(t *testing.T) {
		for i := range 5 {
			if err := s.Append(ctx, "order", turn(i)); err != nil {
				t.Fatal(err)
			}
		}
		tests := []struct {
			limit int
			first string
			n     int
		}{{0, "q0", 10}, {-1, "q0", 10}, {4, "q3", 4}, {3, "a3", 3}, {50, "q0", 10}}
		for _, tc := range tests {
			msgs, err := s.Recent(ctx, "order", history.Window{Messages: tc.limit})
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != tc.n || msgs[0].Content != tc.first || msgs[len(msgs)-1].Content != "a4" {
				t.Fatalf("limit %d: %+v", tc.limit, msgs)
			}
			for _, m := range msgs {
				if m.CreatedAt.IsZero() || time.Since(m.CreatedAt) > time.Minute {
					t.Fatalf("created_at %v", m.CreatedAt)
				}
			}
		}
	})
	t.Run("byte and count window", func(t *testing.T) {
		// "order" holds q0 a0 … q4 a4, 2 bytes each.
		tests := []struct {
			w     history.Window
			n     int
			first string
		}{
			{history.Window{Bytes: 7}, 3, "a3"},
			{history.Window{Bytes: 8}, 4, "q3"},
			{history.Window{Bytes: 1}, 0, ""},
			{history.Window{Messages: 2, Bytes: 100}, 2, "q4"},
			{history.Window{Messages: 9, Bytes: 6}, 3, "a3"},
		}
		for _, tc := range tests {
			msgs, err := s.Recent(ctx, "order", tc.w)
			if err != nil || len(msgs) != tc.n || (tc.n > 0 && (msgs[0].Content != tc.first || msgs[tc.n-1].Content != "a4")) {
				t.Fatalf("%+v: %+v %v", tc.w, msgs, err)
			}
		}
	})
	t.Run("escalated flag", func(t *testing.T) {
		if err := s.Append(ctx, "esc", turn(99)); err != nil {
			t.Fatal(err)
		}
		msgs, _ := s.Recent(ctx, "esc", history.Window{})
		if len(msgs) != 2 || msgs[0].Escalated || !msgs[1].Escalated {
			t.Fatalf("%+v", msgs)
		}
	})
	t.Run("concurrent appends keep turns adjacent", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.Append(ctx, "busy", turn(i)); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		msgs, err := s.Recent(ctx, "busy", history.Window{})
		if err != nil || len(msgs) != 40 {
			t.Fatalf("%d msgs, %v", len(msgs), err)
		}
		for i := 0; i < len(msgs); i += 2 {
			if msgs[i].Role != "user" || msgs[i+1].Role != "assistant" || msgs[i].Content[1:] != msgs[i+1].Content[1:] {
				t.Fatalf("interleaved at %d: %+v %+v", i, msgs[i], msgs[i+1])
			}
		}
	})
	t.Run("unicode and empty content", func(t *testing.T) {
		in := []history.Message{{Role: "user", Content: "héllo ✓ nul:\x00 bad:\xff"}, {Role: "assistant", Content: ""}}
		if err := s.Append(ctx, "uni", in); err != nil {
			t.Fatal(err)
		}
		msgs, _ := s.Recent(ctx, "uni", history.Window{})
		if len(msgs) != 2 || msgs[0].Content != "héllo ✓ nul:\uFFFD bad:\uFFFD" || msgs[1].Content != "" {
			t.Fatalf("%+v", msgs)
		}
	})
}

func TestMemory(t *testing.T) {
	storeContract(t, history.NewMemory(0, 0))
}

func TestMemoryCaps(t *testing.T) {
	ctx := context.Background()
	m := history.NewMemory(2, 4)
	for i := range 3 {
		_ = m.Append(ctx, "t", turn(i))
	}
	msgs, _ := m.Recent(ctx, "t", history.Window{})
	if len(msgs) != 4 || msgs[0].Content != "q1" {
		t.Fatalf("per-thread cap: %+v", msgs)
	}
	_ = m.Append(ctx, "u", turn(0))
	_ = m.Append(ctx, "t", turn(3)) // t is now the most recently written
	_ = m.Append(ctx, "v", turn(0)) // evicts u
	if msgs, _ := m.Recent(ctx, "u", history.Window{}); len(msgs) != 0 {
		t.Fatalf("u not evicted: %+v", msgs)
	}
	if msgs, _ := m.Recent(ctx, "t", history.Window{}); len(msgs) != 4 {
		t.Fatalf("t evicted: %+v", msgs)
	}
}

// A clock the test moves.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestMemoryRetention(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Now()}
	m := history.NewMemoryWith(history.MemoryConfig{TTL: time.Hour, Now: clk.Now})
	defer m.Close()
	_ = m.Append(ctx, "old", turn(0))
	_ = m.Append(ctx, "mixed", turn(0))
	clk.add(40 * time.Minute)
	_ = m.Append(ctx, "mixed", turn(1))
	_ = m.Append(ctx, "new", turn(2))
	clk.add(30 * time.Minute) // old and mixed's first turn are 70 min old
	if msgs, _ := m.Recent(ctx, "old", history.Window{}); len(msgs) != 0 {
		t.Fatalf("expired thread returned: %+v", msgs)
	}
	if msgs, _ := m.Recent(ctx, "mixed", history.Window{}); len(msgs) != 2 || msgs[0].Content != "q1" {
		t.Fatalf("mixed thread: %+v", msgs)
	}
	if n := m.Sweep(); n != 1 {
		t.Fatalf("sweep removed %d threads, want 1 (old)", n)
	}
	clk.add(31 * time.Minute)
	if n := m.Sweep(); n != 2 {
		t.Fatalf("sweep removed %d threads, want 2", n)
	}
	if msgs, _ := m.Recent(ctx, "new", history.Window{}); len(msgs) != 0 {
		t.Fatalf("swept thread returned: %+v", msgs)
	}
}

func TestMemoryByteCap(t *testing.T) {
	ctx := context.Background()
	m := history.NewMemoryWith(history.MemoryConfig{MaxBytes: 10})
	_ = m.Append(ctx, "a", turn(0)) // 4 bytes
	_ = m.Append(ctx, "b", turn(1)) // 8
	_ = m.Append(ctx, "a", turn(2)) // 12: b (least recently written) goes
	if msgs, _ := m.Recent(ctx, "b", history.Window{}); len(msgs) != 0 {
		t.Fatalf("b kept: %+v", msgs)
	}
	if msgs, _ := m.Recent(ctx, "a", history.Window{}); len(msgs) != 4 {
		t.Fatalf("a: %+v", msgs)
	}
	// A thread alone over the cap loses its oldest turns.
	_ = m.Append(ctx, "a", turn(3))
	msgs, _ := m.Recent(ctx, "a", history.Window{})
	if len(msgs) != 4 || msgs[0].Content != "q2" {
		t.Fatalf("a over the cap: %+v", msgs)
	}
	big := []history.Message{{Role: "user", Content: strings.Repeat("x", 20)}, {Role: "assistant", Content: "y"}}
	_ = m.Append(ctx, "c", big)
	if msgs, _ := m.Recent(ctx, "c", history.Window{}); len(msgs) != 0 {
		t.Fatalf("a turn larger than the whole cap was kept: %+v", msgs)
	}
}

func TestPostgresRetentionAndCap(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := history.OpenPostgres(ctx, pg.URL, history.PostgresConfig{MaxMessages: 4, TTL: time.Hour, SweepEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 3 {
		if err := s.Append(ctx, "capped", turn(i)); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := s.Recent(ctx, "capped", history.Window{})
	if err != nil || len(msgs) != 4 || msgs[0].Content != "q1" {
		t.Fatalf("per-thread cap: %+v %v", msgs, err)
	}
	db, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	var rows int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM chat_messages WHERE thread_id = 'capped'`).Scan(&rows); err != nil || rows != 4 {
		t.Fatalf("rows kept: %d %v", rows, err)
	}

	_ = s.Append(ctx, "old", turn(0))
	_ = s.Append(ctx, "mixed", turn(0))
	_ = s.Append(ctx, "mixed", turn(1))
	// Age the rows as the clock would have.
	for _, q := range []string{
		`UPDATE chat_messages SET created_at = now() - interval '2 hours' WHERE thread_id = 'old' OR (thread_id = 'mixed' AND seq <= 2)`,
		`UPDATE chat_threads SET updated_at = now() - interval '2 hours' WHERE thread_id = 'old'`,
	} {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if msgs, _ := s.Recent(ctx, "old", history.Window{}); len(msgs) != 0 {
		t.Fatalf("expired messages returned before the sweep: %+v", msgs)
	}
	if msgs, _ := s.Recent(ctx, "mixed", history.Window{}); len(msgs) != 2 || msgs[0].Content != "q1" {
		t.Fatalf("mixed: %+v", msgs)
	}
	n, err := s.Sweep(ctx)
	if err != nil || n != 4 {
		t.Fatalf("sweep deleted %d messages, %v; want 4", n, err)
	}
	var threads int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM chat_threads WHERE thread_id IN ('old', 'mixed')`).Scan(&threads); err != nil || threads != 1 {
		t.Fatalf("threads left %d %v, want 1 (mixed)", threads, err)
	}
	// A thread deleted by the sweep starts afresh.
	if err := s.Append(ctx, "old", turn(7)); err != nil {
		t.Fatal(err)
	}
	if msgs, _ := s.Recent(ctx, "old", history.Window{}); len(msgs) != 2 || msgs[0].Content != "q7" {
		t.Fatalf("old after the sweep: %+v", msgs)
	}
}

func TestPostgres(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := history.OpenPostgres(ctx, pg.URL, history.PostgresConfig{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storeContract(t, s)

	t.Run("migrations are idempotent", func(t *testing.T) {
		s2, err := history.OpenPostgres(ctx, pg.URL, history.PostgresConfig{MaxConns: 2})
		if err != nil {
			t.Fatal(err)
		}
		s2.Close()
		cc, _ := pgx.ParseConfig(pg.URL)
		if err := history.Migrate(ctx, cc); err != nil {
			t.Fatal(err)
		}
		msgs, err := s.Recent(ctx, "order", history.Window{})
		if err != nil || len(msgs) != 10 {
			t.Fatalf("data after re-migration: %d %v", len(msgs), err)
		}
	})

	t.Run("survives a database restart", func(t *testing.T) {
		pg.Restart()
		// The pool's old connections died with the server; pgx drops them
		// and a retry gets a fresh one.
		var msgs []history.Message
		var err error
		for range 3 {
			if msgs, err = s.Recent(ctx, "order", history.Window{}); err == nil {
				break
			}
		}
		if err != nil || len(msgs) != 10 || msgs[0].Content != "q0" {
			t.Fatalf("after restart: %d %v", len(msgs), err)
		}
		if err := s.Append(ctx, "order", turn(5)); err != nil {
			t.Fatal(err)
		}
		// A new store (a restarted wsedge) sees the same thread.
		s3, err := history.OpenPostgres(ctx, pg.URL, history.PostgresConfig{MaxConns: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer s3.Close()
		msgs, err = s3.Recent(ctx, "order", history.Window{Messages: 2})
		if err != nil || len(msgs) != 2 || msgs[0].Content != "q5" {
			t.Fatalf("new store: %+v %v", msgs, err)
		}
	})

	t.Run("database down fails fast with an error", func(t *testing.T) {
		pg.Stop()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := s.Recent(cctx, "order", history.Window{}); err == nil {
			t.Fatal("no error with the database down")
		}
		if err := s.Append(cctx, "order", turn(6)); err == nil {
			t.Fatal("no error with the database down")
		}
		if _, err := history.OpenPostgres(cctx, pg.URL, history.PostgresConfig{MaxConns: 1}); err == nil {
			t.Fatal("open succeeded with the database down")
		}
	})
}
