package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"time"

	"github.com/wsedge/wsedge/bench/internal/wsclient"
)

// helloFrame is what every benchmark connection says first.
var helloFrame = []byte(`{"type":"hello","user_type":"bench","client_type":"bench"}`)

// connectHello dials, waits for the connected frame and says hello.
func connectHello(ctx context.Context, url string, localIP net.IP, timeout time.Duration) (*wsclient.Client, error) {
	c, err := wsclient.Dial(ctx, url, localIP, timeout)
	if err != nil {
		return nil, err
	}
	p, err := c.NextText(timeout)
	if err != nil {
		c.Conn().Close()
		return nil, fmt.Errorf("read connected: %w", err)
	}
	if !bytes.Contains(p, []byte(`"connected"`)) {
		c.Conn().Close()
		return nil, fmt.Errorf("first frame is not connected: %.100s", p)
	}
	if err := c.WriteText(helloFrame); err != nil {
		c.Conn().Close()
		return nil, fmt.Errorf("send hello: %w", err)
	}
	return c, nil
}
