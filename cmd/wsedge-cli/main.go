// Command wsedge-cli is a small interactive WebSocket client for wsedge, used
// by the README walkthroughs, for session streams and chat alike:
//
//	wsedge-cli [-hello user_type[,client_type]] [-grace 1s] ws://127.0.0.1:8000/ws/session/11/
//	wsedge-cli ws://127.0.0.1:8000/ws/chat/
//
// Every text frame received is printed on its own line on stdout; every
// stdin line is sent as a text frame. On stdin EOF it waits -grace for
// replies, sends close 1000 and exits. When the server closes, it prints
// "closed: <code> <reason>" on stderr and exits (status 0 for 1000/1001,
// 3 otherwise).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// conn serialises writes: stdin lines and the reader's pong/close replies
// share the socket, and each frame goes out in one Write.
type conn struct {
	mu sync.Mutex
	nc net.Conn
}

func (c *conn) write(op ws.OpCode, p []byte) error {
	var buf bytes.Buffer
	if err := wsutil.WriteClientMessage(&buf, op, p); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.nc.Write(buf.Bytes())
	return err
}

// helloJSON builds the hello frame for "user_type[,client_type]".
func helloJSON(spec string) ([]byte, error) {
	ut, ct, _ := strings.Cut(spec, ",")
	if ut == "" {
		return nil, errors.New("-hello: user_type is empty")
	}
	h := map[string]string{"type": "hello", "user_type": ut}
	if ct != "" {
		h["client_type"] = ct
	}
	return json.Marshal(h)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wsedge-cli", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hello := fs.String("hello", "", "send {\"type\":\"hello\"} first with user_type[,client_type]")
	grace := fs.Duration("grace", time.Second, "after stdin ends, wait this long for replies before closing")
	origin := fs.String("origin", "", "Origin header to send (needed when the server runs with DEBUG=0)")
	timeout := fs.Duration("timeout", 10*time.Second, "connect and upgrade timeout")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: wsedge-cli [flags] URL

URL is a wsedge WebSocket route:
  ws://host:port/ws/session/<id>/   a session stream; the server wants a hello first: use -hello
  ws://host:port/ws/chat/           chat turns; add ?authorization=<key> when AUTH_API_KEY is set

Every text frame received is printed on its own line; every line typed is sent as a text frame
(JSON, e.g. {"type":"presence"} or {"type":"chat","message":"hi","thread_id":"t1"}).
With a server running DEBUG=0, pass -origin with an allowed origin (or the server sets
ALLOW_MISSING_ORIGIN=1).

flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	var helloFrame []byte
	if *hello != "" {
		var err error
		if helloFrame, err = helloJSON(*hello); err != nil {
			fmt.Fprintln(stderr, "wsedge-cli:", err)
			return 2
		}
	}
	d := ws.Dialer{Timeout: *timeout}
	if *origin != "" {
		d.Header = ws.HandshakeHeaderHTTP(http.Header{"Origin": {*origin}})
	}
	nc, br, _, err := d.Dial(ctx, fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "wsedge-cli: connect:", err)
		return 1
	}
	defer nc.Close()
	c := &conn{nc: nc}
	var src io.Reader = nc
	if br != nil {
		src = io.MultiReader(br, nc)
	}

	// closed receives the server's close code once the reader is done.
	closed := make(chan int, 1)
	out := bufio.NewWriter(stdout)
	go func() { closed <- readLoop(c, src, out, stderr) }()

	if helloFrame != nil {
		if err := c.write(ws.OpText, helloFrame); err != nil {
			fmt.Fprintln(stderr, "wsedge-cli: send hello:", err)
			return 1
		}
	}
	lines := make(chan []byte)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			if l := bytes.TrimSpace(sc.Bytes()); len(l) > 0 {
				lines <- bytes.Clone(l)
			}
		}
	}()
	for {
		select {
		case code := <-closed:
			return code
		case <-ctx.Done():
			_ = c.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
			return 130
		case l, ok := <-lines:
			if !ok {
				return finish(c, closed, *grace, stderr)
			}
			if err := c.write(ws.OpText, l); err != nil {
				fmt.Fprintln(stderr, "wsedge-cli: send:", err)
				return <-closed
			}
		}
	}
}

// finish waits grace for late replies, then closes normally and waits for
// the server's close reply (bounded).
func finish(c *conn, closed chan int, grace time.Duration, stderr io.Writer) int {
	select {
	case code := <-closed:
		return code
	case <-time.After(grace):
	}
	if err := c.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "")); err != nil {
		fmt.Fprintln(stderr, "wsedge-cli: close:", err)
		return 1
	}
	select {
	case code := <-closed:
		return code
	case <-time.After(2 * time.Second):
		return 0
	}
}

// readLoop prints text frames and answers control frames until the
// connection ends; it returns the exit status.
func readLoop(c *conn, src io.Reader, out *bufio.Writer, stderr io.Writer) int {
	rd := &wsutil.Reader{Source: src, State: ws.StateClientSide, CheckUTF8: true}
	for {
		h, err := rd.NextFrame()
		if err != nil {
			fmt.Fprintln(stderr, "wsedge-cli: connection ended:", err)
			return 1
		}
		p, err := io.ReadAll(rd)
		if err != nil {
			fmt.Fprintln(stderr, "wsedge-cli: read:", err)
			return 1
		}
		switch h.OpCode {
		case ws.OpPing:
			_ = c.write(ws.OpPong, p)
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			if code.Empty() {
				code = ws.StatusNoStatusRcvd
			}
			// Echo the code, as RFC 6455 asks; the server may already be gone.
			_ = c.write(ws.OpClose, ws.NewCloseFrameBody(code, ""))
			fmt.Fprintf(stderr, "closed: %d %s\n", code, reason)
			if code == ws.StatusNormalClosure || code == ws.StatusGoingAway {
				return 0
			}
			return 3
		case ws.OpText:
			out.Write(p)
			out.WriteByte('\n')
			out.Flush()
		case ws.OpBinary:
			fmt.Fprintf(stderr, "binary frame of %d bytes\n", len(p))
		}
	}
}
