package history_test

import (
	"context"
	"fmt"
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
		msgs, err := s.Recent(ctx, "nope", 10)
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
			msgs, err := s.Recent(ctx, "order", tc.limit)
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
	t.Run("escalated flag", func(t *testing.T) {
		if err := s.Append(ctx, "esc", turn(99)); err != nil {
			t.Fatal(err)
		}
		msgs, _ := s.Recent(ctx, "esc", 0)
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
		msgs, err := s.Recent(ctx, "busy", 0)
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
		msgs, _ := s.Recent(ctx, "uni", 0)
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
	msgs, _ := m.Recent(ctx, "t", 0)
	if len(msgs) != 4 || msgs[0].Content != "q1" {
		t.Fatalf("per-thread cap: %+v", msgs)
	}
	_ = m.Append(ctx, "u", turn(0))
	_ = m.Append(ctx, "t", turn(3)) // t is now the most recently written
	_ = m.Append(ctx, "v", turn(0)) // evicts u
	if msgs, _ := m.Recent(ctx, "u", 0); len(msgs) != 0 {
		t.Fatalf("u not evicted: %+v", msgs)
	}
	if msgs, _ := m.Recent(ctx, "t", 0); len(msgs) != 4 {
		t.Fatalf("t evicted: %+v", msgs)
	}
}

func TestPostgres(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := history.OpenPostgres(ctx, pg.URL, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storeContract(t, s)

	t.Run("migrations are idempotent", func(t *testing.T) {
		s2, err := history.OpenPostgres(ctx, pg.URL, 2)
		if err != nil {
			t.Fatal(err)
		}
		s2.Close()
		cc, _ := pgx.ParseConfig(pg.URL)
		if err := history.Migrate(ctx, cc); err != nil {
			t.Fatal(err)
		}
		msgs, err := s.Recent(ctx, "order", 0)
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
			if msgs, err = s.Recent(ctx, "order", 0); err == nil {
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
		s3, err := history.OpenPostgres(ctx, pg.URL, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer s3.Close()
		msgs, err = s3.Recent(ctx, "order", 2)
		if err != nil || len(msgs) != 2 || msgs[0].Content != "q5" {
			t.Fatalf("new store: %+v %v", msgs, err)
		}
	})

	t.Run("database down fails fast with an error", func(t *testing.T) {
		pg.Stop()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := s.Recent(cctx, "order", 0); err == nil {
			t.Fatal("no error with the database down")
		}
		if err := s.Append(cctx, "order", turn(6)); err == nil {
			t.Fatal("no error with the database down")
		}
		if _, err := history.OpenPostgres(cctx, pg.URL, 1); err == nil {
			t.Fatal("open succeeded with the database down")
		}
	})
}
