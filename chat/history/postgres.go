package history

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// versionTable is tern's bookkeeping table for this package's schema.
const versionTable = "wsedge_chat_schema_version"

// Postgres stores threads in PostgreSQL through a pgx connection pool.
type Postgres struct {
	pool *pgxpool.Pool
}

// OpenPostgres connects to url (a postgres:// URL or key=value DSN), brings
// the schema up to date with the embedded migrations, and returns the store.
// Migrations run under tern's advisory lock, so instances starting together
// do not race, and running them again is a no-op. maxConns caps the pool
// (<= 0: pgx's default); callers beyond it wait for a connection, bounded by
// their context.
func OpenPostgres(ctx context.Context, url string, maxConns int32) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("history: database url: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	if err := Migrate(ctx, cfg.ConnConfig); err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("history: open pool: %w", err)
	}
	return &Postgres{pool: pool}, nil
}

// Migrate applies the embedded migrations over one dedicated connection.
func Migrate(ctx context.Context, cc *pgx.ConnConfig) error {
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
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"chat_messages"},
			[]string{"thread_id", "seq", "role", "content", "escalated"}, pgx.CopyFromRows(rows))
		return err
	})
}

// Recent implements Store.
func (p *Postgres) Recent(ctx context.Context, threadID string, limit int) ([]Message, error) {
	if limit <= 0 {
		limit = -1
	}
	var msgs []Message
	err := p.retry(ctx, true, func() (err error) {
		msgs, err = p.recent(ctx, threadID, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("history recent %q: %w", threadID, err)
	}
	return msgs, nil
}

func (p *Postgres) recent(ctx context.Context, threadID string, limit int) ([]Message, error) {
	rows, err := p.pool.Query(ctx, `SELECT role, content, escalated, created_at FROM (
			SELECT seq, role, content, escalated, created_at FROM chat_messages
			WHERE thread_id = $1 ORDER BY seq DESC LIMIT NULLIF($2::bigint, -1)
		) last ORDER BY seq`, threadID, limit)
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

// Close implements Store.
func (p *Postgres) Close() { p.pool.Close() }
