package baseline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ListenAndServe runs a baseline server on addr (WebSocket and /health/)
// and admin (/metrics) until ctx is done. Upgraded connections are not
// drained: the baseline exists to be measured, not deployed.
func ListenAndServe(ctx context.Context, addr, admin string, opts Options, log *slog.Logger) error {
	s := New(opts, log)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	aln, err := net.Listen("tcp", admin)
	if err != nil {
		ln.Close()
		return fmt.Errorf("listen admin %s: %w", admin, err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	asrv := &http.Server{Handler: s.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	go func() { errc <- asrv.Serve(aln) }()
	log.Info("baseline listening", "addr", ln.Addr().String(), "admin", aln.Addr().String())
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	_ = asrv.Shutdown(sctx)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
