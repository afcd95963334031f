package history

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

var _ Store = (*Postgres)(nil)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// versionTable is tern's bookkeeping table for this package's schema.
const versionTable = "wsedge_chat_schema_version"

// PostgresConfig tunes the PostgreSQL store. Zero values take the defaults
// in brackets.
type PostgresConfig struct {
	// MaxConns caps the pool [pgx's default]; callers beyond it wait for a
	// connection, bounded by their context.
	MaxConns int32
	// MaxMessages per thread: an Append that passes it deletes the
	// thread's oldest messages in the same transaction [1,000].
	MaxMessages int
	// TTL is the retention: messages older than TTL are never returned, and
	// a sweep every SweepEvery deletes them (and threads left without
	// messages), 1,000 rows per statement, off the request path. 0 keeps
	// messages forever.
	TTL time.Duration
	// SweepEvery [TTL/10, between 1 s and 1 h].
	SweepEvery time.Duration
	// Log receives sweep failures [discarded].
	Log *slog.Logger
}

// Postgres stores threads in PostgreSQL through a pgx connection pool.
type Postgres struct {
	pool *pgxpool.Pool
	cfg  PostgresConfig

	stop     chan struct{}
	stopOnce sync.Once
	sweeper  sync.WaitGroup
}

// OpenPostgres connects to url (a postgres:// URL or key=value DSN), brings
// the schema up to date with the embedded migrations, and returns the store.
// Migrations run under tern's advisory lock, so instances starting together
// do not race, and running them again is a no-op. With a TTL it starts the
// retention sweep, which Close stops.
func OpenPostgres(ctx context.Context, url string, pc PostgresConfig) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("history: database url: %w", err)
	}
	if pc.MaxConns > 0 {
		cfg.MaxConns = pc.MaxConns
	}
	if pc.MaxMessages <= 0 {
		pc.MaxMessages = 1000
	}
	if pc.SweepEvery <= 0 {
		pc.SweepEvery = min(max(pc.TTL/10, time.Second), time.Hour)
	}
	if pc.Log == nil {
		pc.Log = slog.New(slog.DiscardHandler)
	}
	if err := applyMigrations(ctx, cfg.ConnConfig); err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("history: open pool: %w", err)
	}
	p := &Postgres{pool: pool, cfg: pc, stop: make(chan struct{})}
	if pc.TTL > 0 {
		p.sweeper.Add(1)
		go p.sweepLoop()
	}
	return p, nil
}

func (p *Postgres) sweepLoop() {
	defer p.sweeper.Done()
	t := time.NewTicker(p.cfg.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.SweepEvery)
		go func() {
			select {
			case <-p.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		if _, err := p.Sweep(ctx); err != nil && ctx.Err() == nil {
			p.cfg.Log.Warn("chat history retention sweep", "err", err)
		}
		cancel()
	}
}

// sweepBatch bounds each DELETE, so that a sweep after a long pause holds
// no long lock and does not bloat one transaction.
const sweepBatch = 1000

// Sweep deletes the messages older than the retention, then the threads
// left without messages; it returns how many messages it deleted. Several
// instances may sweep at once: they only delete the same expired rows.
func (p *Postgres) Sweep(ctx context.Context) (int64, error) {
	if p.cfg.TTL <= 0 {
		return 0, nil
	}
	ttl := p.cfg.TTL.Seconds()
	var total int64
	for {
		tag, err := p.pool.Exec(ctx, `DELETE FROM chat_messages WHERE ctid IN (
			SELECT ctid FROM chat_messages WHERE created_at < now() - $1 * interval '1 second' LIMIT $2)`, ttl, sweepBatch)
		if err != nil {
			return total, fmt.Errorf("history sweep messages: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < sweepBatch {
			break
		}
	}
	for {
		// updated_at is re-checked on a row an Append has just locked and
		// updated, so a thread written meanwhile is kept.
		tag, err := p.pool.Exec(ctx, `DELETE FROM chat_threads WHERE thread_id IN (
			SELECT t.thread_id FROM chat_threads t WHERE t.updated_at < now() - $1 * interval '1 second'
			AND NOT EXISTS (SELECT 1 FROM chat_messages m WHERE m.thread_id = t.thread_id) LIMIT $2)
			AND updated_at < now() - $1 * interval '1 second'`, ttl, sweepBatch)
		if err != nil {
			return total, fmt.Errorf("history sweep threads: %w", err)
		}
		if tag.RowsAffected() < sweepBatch {
			break
		}
	}
	return total, nil
}

// applyMigrations applies the embedded migrations over one dedicated connection.
func applyMigrations(ctx context.Context, cc *pgx.ConnConfig) error {
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("history: migrate: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	m, err := migrate.NewMigrator(ctx, conn, versionTable)
	if err != nil {
		return fmt.Errorf("history: migrate: %w", err)
	}
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("history: migrate: %w", err)
	}
	if err := m.LoadMigrations(sub); err != nil {
		return fmt.Errorf("history: migrate: load: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("history: migrate: %w", err)
	}
	return nil
}

// Append implements Store.
func (p *Postgres) Append(ctx context.Context, threadID string, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	err := p.retry(ctx, false, func() error { return p.append(ctx, threadID, msgs) })
	if err != nil {
		return fmt.Errorf("history append %q: %w", threadID, err)
	}
	return nil
}

// retry runs op again, once, after an error that says the connection is
// dead (the server restarted or failed over). Without it every idle pooled
// connection would fail one request after a quick database restart. A
// write (idempotent false) is retried only when it cannot have committed: a
// network error during COMMIT is ambiguous and is returned as is.
func (p *Postgres) retry(ctx context.Context, idempotent bool, op func() error) error {
	err := op()
	if err == nil || ctx.Err() != nil || !deadConn(err, idempotent) {
		return err
	}
	p.pool.Reset()
	return op()
}

// deadConn reports a lost connection: a network error, or the server
// telling us it is shutting down (SQLSTATE class 57: operator intervention).
func deadConn(err error, idempotent bool) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return len(pgErr.Code) == 5 && pgErr.Code[:2] == "57"
	}
	if pgconn.SafeToRetry(err) {
		return true
	}
	return idempotent && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || isNetErr(err))
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

func (p *Postgres) append(ctx context.Context, threadID string, msgs []Message) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var count int
		// The upsert locks the thread's row until commit: a concurrent
		// Append to the same thread waits here, so seq ranges never overlap.
		err := tx.QueryRow(ctx, `INSERT INTO chat_threads (thread_id, message_count) VALUES ($1, $2)
			ON CONFLICT (thread_id) DO UPDATE SET message_count = chat_threads.message_count + $2, updated_at = now()
			RETURNING message_count`, threadID, len(msgs)).Scan(&count)
		if err != nil {
			return err
		}
		first := count - len(msgs) + 1
		rows := make([][]any, len(msgs))
		for i, m := range msgs {
			rows[i] = []any{threadID, first + i, m.Role, Clean(m.Content), m.Escalated}
		}
		if _, err = tx.CopyFrom(ctx, pgx.Identifier{"chat_messages"},
			[]string{"thread_id", "seq", "role", "content", "escalated"}, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		if keepFrom := count - p.cfg.MaxMessages; keepFrom > 0 {
			// Past the per-thread cap: the oldest whole turns go (an even
			// number of messages from an even seq keeps the thread starting
			// with a user message).
			keepFrom += keepFrom % 2
			_, err = tx.Exec(ctx, `DELETE FROM chat_messages WHERE thread_id = $1 AND seq <= $2`, threadID, keepFrom)
		}
		return err
	})
}

// Recent implements Store.
func (p *Postgres) Recent(ctx context.Context, threadID string, w Window) ([]Message, error) {
	var msgs []Message
	err := p.retry(ctx, true, func() (err error) {
		msgs, err = p.recent(ctx, threadID, w)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("history recent %q: %w", threadID, err)
	}
	return msgs, nil
}

func (p *Postgres) recent(ctx context.Context, threadID string, w Window) ([]Message, error) {
	var limit, maxBytes, ttl any // NULL: no bound
	if w.Messages > 0 {
		limit = w.Messages
	}
	if w.Bytes > 0 {
		maxBytes = w.Bytes
	}
	if p.cfg.TTL > 0 {
		ttl = p.cfg.TTL.Seconds()
	}
	// The running sum walks the primary key newest first and stops at the
	// LIMIT, so the bytes read are bounded by the window's message count
	// times the largest message; the database clock decides expiry.
	rows, err := p.pool.Query(ctx, `SELECT role, content, escalated, created_at FROM (
			SELECT seq, role, content, escalated, created_at,
				sum(octet_length(content)) OVER (ORDER BY seq DESC) AS bytes
			FROM chat_messages
			WHERE thread_id = $1 AND ($4::float8 IS NULL OR created_at > now() - $4::float8 * interval '1 second')
			ORDER BY seq DESC LIMIT $2::bigint
		) last WHERE $3::bigint IS NULL OR bytes <= $3::bigint ORDER BY seq`, threadID, limit, maxBytes, ttl)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Message, error) {
		var m Message
		err := r.Scan(&m.Role, &m.Content, &m.Escalated, &m.CreatedAt)
		m.CreatedAt = m.CreatedAt.UTC()
		return m, err
	})
}

// Ping checks that the database answers.
func (p *Postgres) Ping(ctx context.Context) error {
	if err := p.pool.Ping(ctx); err != nil {
		return fmt.Errorf("history ping: %w", err)
	}
	return nil
}

// Close implements Store: it stops the sweep and closes the pool.
func (p *Postgres) Close() {
	p.stopOnce.Do(func() { close(p.stop) })
	p.sweeper.Wait()
	p.pool.Close()
}
