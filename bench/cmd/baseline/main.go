// Command baseline is the goroutine-per-connection session server that the
// wsedge benchmarks compare against. See bench/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wsedge/wsedge/bench/baseline"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("baseline", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8100", "WebSocket/HTTP listen address")
	admin := fs.String("admin", "127.0.0.1:9190", "admin listen address (/metrics)")
	var opts baseline.Options
	fs.DurationVar(&opts.HelloTimeout, "hello-timeout", 30*time.Second, "close connections that send no hello within this time (4001)")
	fs.IntVar(&opts.MaxMessage, "max-message", 1<<20, "largest accepted message in bytes (larger: close 1009)")
	fs.IntVar(&opts.QueueBytes, "queue-bytes", 1<<20, "outbound bytes queued per connection before it is closed with 1013")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return baseline.ListenAndServe(ctx, *addr, *admin, opts, slog.New(slog.NewTextHandler(os.Stderr, nil)))
}
