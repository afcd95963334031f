package main

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wsedge/wsedge/edge"
)

const cfgSecret = "k3Jd9-q8Zr_2Lm4Xv7Tn0Wb6Yc1Ps5Hg"

func cfgEnv(m map[string]string) env {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// prod is a minimal valid DEBUG=0 environment plus the given overrides.
func cfgProd(kv ...string) map[string]string {
	m := map[string]string{"SECRET_KEY": cfgSecret, "ALLOWED_HOSTS": "example.com"}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func cfgLoad(t *testing.T, m map[string]string) config {
	t.Helper()
	c, err := loadConfig(cfgEnv(m))
	if err != nil {
		t.Fatalf("loadConfig(%v): %v", m, err)
	}
	return c
}

func cfgLoadErr(t *testing.T, m map[string]string) string {
	t.Helper()
	_, err := loadConfig(cfgEnv(m))
	if err == nil {
		t.Fatalf("loadConfig(%v) accepted", m)
	}
	return err.Error()
}

func TestConfigDefaults(t *testing.T) {
	host, _ := os.Hostname()
	for _, tc := range []struct {
		name  string
		env   map[string]string
		debug bool
		hosts []string
	}{
		{"debug, nothing else", map[string]string{"DEBUG": "1"}, true, nil},
		{"production minimum", cfgProd(), false, []string{"example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfgLoad(t, tc.env)
			want := edge.Defaults()
			want.InstanceID = host
			want.Debug = tc.debug
			want.AllowedHosts = tc.hosts
			want.EventLoops = runtime.NumCPU()
			if !reflect.DeepEqual(c.Edge, want) {
				t.Fatalf("edge config\n got %+v\nwant %+v", c.Edge, want)
			}
			if c.AdminAddr != "127.0.0.1:9090" || c.LogLevel != slog.LevelInfo || !c.LogJSON {
				t.Fatalf("admin %q, log level %v, json %v", c.AdminAddr, c.LogLevel, c.LogJSON)
			}
			if c.Edge.Addr != "0.0.0.0:8000" || c.Edge.MaxMessageSize != 1<<20 || c.Edge.HelloTimeout != 30*time.Second {
				t.Fatalf("PROTOCOL.md defaults changed: %+v", c.Edge)
			}
		})
	}
}

func TestConfigValues(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   map[string]string
		check func(c config) bool
	}{
		{"ADDR", cfgProd("ADDR", "127.0.0.1:9000"), func(c config) bool { return c.Edge.Addr == "127.0.0.1:9000" }},
		{"ADMIN_ADDR", cfgProd("ADMIN_ADDR", ":9191"), func(c config) bool { return c.AdminAddr == ":9191" }},
		{"INSTANCE_ID", cfgProd("INSTANCE_ID", "i-0abc"), func(c config) bool { return c.Edge.InstanceID == "i-0abc" }},
		{"AUTH_API_KEY", cfgProd("AUTH_API_KEY", "k"), func(c config) bool { return c.Edge.AuthAPIKey == "k" }},
		{"ALLOW_MISSING_ORIGIN", cfgProd("ALLOW_MISSING_ORIGIN", "1"), func(c config) bool { return c.Edge.AllowMissingOrigin }},
		{"ALLOW_MISSING_ORIGIN off by default", cfgProd(), func(c config) bool { return !c.Edge.AllowMissingOrigin }},
		{"EVENT_LOOPS", cfgProd("EVENT_LOOPS", " 3 "), func(c config) bool { return c.Edge.EventLoops == 3 }},
		{"MAX_CONNECTIONS", cfgProd("MAX_CONNECTIONS", "20000"), func(c config) bool { return c.Edge.MaxConnections == 20000 }},
		{"HELLO_TIMEOUT", cfgProd("HELLO_TIMEOUT", "1m"), func(c config) bool { return c.Edge.HelloTimeout == time.Minute }},
		{"HTTP_IDLE_TIMEOUT", cfgProd("HTTP_IDLE_TIMEOUT", "90s"), func(c config) bool { return c.Edge.HTTPIdleTimeout == 90*time.Second }},
		{"DRAIN_SPREAD zero", cfgProd("DRAIN_SPREAD", "0s"), func(c config) bool { return c.Edge.DrainSpread == 0 }},
		{"RECONNECT_JITTER", cfgProd("RECONNECT_JITTER", "250ms"), func(c config) bool { return c.Edge.ReconnectJitter == 250*time.Millisecond }},
		{"empty value keeps default", cfgProd("HELLO_TIMEOUT", " ", "EVENT_LOOPS", ""), func(c config) bool {
			return c.Edge.HelloTimeout == 30*time.Second && c.Edge.EventLoops == runtime.NumCPU()
		}},
		{"ALLOWED_HOSTS split and trimmed", cfgProd("ALLOWED_HOSTS", " a.com, .b.com ,,*"), func(c config) bool {
			return reflect.DeepEqual(c.Edge.AllowedHosts, []string{"a.com", ".b.com", "*"})
		}},
		{"LOG_LEVEL debug", cfgProd("LOG_LEVEL", "debug"), func(c config) bool { return c.LogLevel == slog.LevelDebug }},
		{"LOG_LEVEL WARN", cfgProd("LOG_LEVEL", "WARN"), func(c config) bool { return c.LogLevel == slog.LevelWarn }},
		{"LOG_LEVEL warning", cfgProd("LOG_LEVEL", "warning"), func(c config) bool { return c.LogLevel == slog.LevelWarn }},
		{"LOG_LEVEL error", cfgProd("LOG_LEVEL", "error"), func(c config) bool { return c.LogLevel == slog.LevelError }},
		{"LOG_LEVEL empty", cfgProd("LOG_LEVEL", ""), func(c config) bool { return c.LogLevel == slog.LevelInfo }},
		{"LOG_FORMAT text", cfgProd("LOG_FORMAT", "text"), func(c config) bool { return !c.LogJSON }},
		{"LOG_FORMAT JSON", cfgProd("LOG_FORMAT", "JSON"), func(c config) bool { return c.LogJSON }},
		{"DEBUG true", map[string]string{"DEBUG": "true"}, func(c config) bool { return c.Edge.Debug }},
		{"DEBUG yes", map[string]string{"DEBUG": "YES"}, func(c config) bool { return c.Edge.Debug }},
		{"DEBUG on", map[string]string{"DEBUG": " on "}, func(c config) bool { return c.Edge.Debug }},
		{"DEBUG 0", cfgProd("DEBUG", "0"), func(c config) bool { return !c.Edge.Debug }},
		{"DEBUG false", cfgProd("DEBUG", "false"), func(c config) bool { return !c.Edge.Debug }},
		{"DEBUG empty is the default", cfgProd("DEBUG", ""), func(c config) bool { return !c.Edge.Debug }},
		{"debug keeps a placeholder secret", map[string]string{"DEBUG": "1", "SECRET_KEY": "changeme"}, func(c config) bool { return c.SecretKey == "changeme" }},
		// The edge answers /api/*: the chat API's settings must reach it.
		{"CHAT_API_TIMEOUT reaches the edge", cfgProd("CHAT_API_TIMEOUT", "45s"), func(c config) bool { return c.Edge.APITimeout == 45*time.Second }},
		{"CHAT_API_TIMEOUT default", cfgProd(), func(c config) bool { return c.Edge.APITimeout == 2*time.Minute }},
		{"CHAT_API_MAX_BODY reaches the edge", cfgProd("CHAT_API_MAX_BODY", "256KiB"), func(c config) bool {
			return c.Edge.MaxBodyBytes == 256<<10 && c.Chat.API.MaxBody == 256<<10
		}},
		{"CHAT_API_MAX_BODY default", cfgProd(), func(c config) bool { return c.Edge.MaxBodyBytes == 64<<10 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c := cfgLoad(t, tc.env); !tc.check(c) {
				t.Fatalf("unexpected config for %v: %+v", tc.env, c)
			}
		})
	}
}

func TestConfigDjangoAliases(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    map[string]string
		debug  bool
		hosts  []string
		secret string
	}{
		{"DJANGO_DEBUG=1", map[string]string{"DJANGO_DEBUG": "1"}, true, nil, ""},
		{"DJANGO_DEBUG=0", map[string]string{"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": cfgSecret, "DJANGO_ALLOWED_HOSTS": "x.com"}, false, []string{"x.com"}, cfgSecret},
		{"DEBUG wins over DJANGO_DEBUG", map[string]string{"DEBUG": "1", "DJANGO_DEBUG": "0"}, true, nil, ""},
		{"DEBUG=0 wins over DJANGO_DEBUG=1", cfgProd("DEBUG", "0", "DJANGO_DEBUG", "1"), false, []string{"example.com"}, cfgSecret},
		{"DJANGO_ALLOWED_HOSTS", map[string]string{"DJANGO_SECRET_KEY": cfgSecret, "DJANGO_ALLOWED_HOSTS": "example.com,internal-alb-dns"}, false, []string{"example.com", "internal-alb-dns"}, cfgSecret},
		{"ALLOWED_HOSTS wins", map[string]string{"SECRET_KEY": cfgSecret, "ALLOWED_HOSTS": "a.com", "DJANGO_ALLOWED_HOSTS": "b.com"}, false, []string{"a.com"}, cfgSecret},
		{"DJANGO_SECRET_KEY", map[string]string{"DJANGO_SECRET_KEY": cfgSecret, "ALLOWED_HOSTS": "*"}, false, []string{"*"}, cfgSecret},
		{"SECRET_KEY wins", map[string]string{"SECRET_KEY": cfgSecret, "DJANGO_SECRET_KEY": "other-secret-value-0123456789", "ALLOWED_HOSTS": "*"}, false, []string{"*"}, cfgSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfgLoad(t, tc.env)
			if c.Edge.Debug != tc.debug || !reflect.DeepEqual(c.Edge.AllowedHosts, tc.hosts) || c.SecretKey != tc.secret {
				t.Fatalf("debug %v hosts %q secret %q; want %v %q %q", c.Edge.Debug, c.Edge.AllowedHosts, c.SecretKey, tc.debug, tc.hosts, tc.secret)
			}
		})
	}
	// A placeholder under the alias is refused just the same.
	msg := cfgLoadErr(t, map[string]string{"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "django-insecure-abcdefghijklmnop", "DJANGO_ALLOWED_HOSTS": "a.com"})
	if !strings.Contains(msg, "SECRET_KEY") {
		t.Fatalf("error does not name SECRET_KEY: %s", msg)
	}
}

func TestConfigProductionRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string // substrings of the error
	}{
		{"nothing set (DEBUG defaults to 0)", map[string]string{}, []string{"SECRET_KEY", "DEBUG=1", "ALLOWED_HOSTS"}},
		{"missing secret", map[string]string{"DEBUG": "0", "ALLOWED_HOSTS": "a.com"}, []string{"SECRET_KEY", "DJANGO_SECRET_KEY", "at least 32"}},
		{"empty secret", cfgProd("SECRET_KEY", ""), []string{"SECRET_KEY"}},
		{"blank secret", cfgProd("SECRET_KEY", "                    "), []string{"SECRET_KEY"}},
		{"placeholder secret", cfgProd("SECRET_KEY", "changeme"), []string{"SECRET_KEY"}},
		{"django-insecure secret", cfgProd("SECRET_KEY", "django-insecure-9f$k2#x!p0q@w8e7r6t5y4u3i2o1"), []string{"SECRET_KEY"}},
		{"long secret containing change-me", cfgProd("SECRET_KEY", "please-change-me-before-deploying"), []string{"SECRET_KEY"}},
		{"short secret", cfgProd("SECRET_KEY", "abc123XYZ"), []string{"SECRET_KEY", "32"}},
		{"15 characters", cfgProd("SECRET_KEY", "abcdefghijklmno"), []string{"SECRET_KEY"}},
		{"missing allowed hosts", map[string]string{"SECRET_KEY": cfgSecret}, []string{"ALLOWED_HOSTS", "DJANGO_ALLOWED_HOSTS", "Origin"}},
		{"allowed hosts only separators", cfgProd("ALLOWED_HOSTS", " , ,"), []string{"ALLOWED_HOSTS"}},
		{"DJANGO_ALLOWED_HOSTS empty", map[string]string{"SECRET_KEY": cfgSecret, "DJANGO_ALLOWED_HOSTS": ""}, []string{"ALLOWED_HOSTS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := cfgLoadErr(t, tc.env)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not mention %q:\n%s", w, msg)
				}
			}
		})
	}
	// Exactly the problems present are reported.
	if msg := cfgLoadErr(t, cfgProd("SECRET_KEY", "changeme")); strings.Contains(msg, "ALLOWED_HOSTS") {
		t.Fatalf("ALLOWED_HOSTS reported although set:\n%s", msg)
	}
	if msg := cfgLoadErr(t, cfgProd("ALLOWED_HOSTS", "")); strings.Contains(msg, "SECRET_KEY") {
		t.Fatalf("SECRET_KEY reported although valid:\n%s", msg)
	}
	const random32 = "q7X2mZ9rT4vB1nK8wE5yH3jL6pD0sF9g"
	if c := cfgLoad(t, cfgProd("SECRET_KEY", random32)); c.SecretKey != random32 {
		t.Fatalf("secret %q", c.SecretKey)
	}
}

func TestConfigBadValues(t *testing.T) {
	for _, tc := range []struct {
		key, value string
		want       string // besides the key itself
	}{
		{"DEBUG", "maybe", "0 or 1"},
		{"ALLOW_MISSING_ORIGIN", "sometimes", "0 or 1"},
		{"DJANGO_DEBUG", "2", "0 or 1"},
		{"EVENT_LOOPS", "four", "whole number"},
		{"EVENT_LOOPS", "0", "between 1 and 256"},
		{"EVENT_LOOPS", "257", "between"},
		{"EVENT_LOOPS", "1.5", "whole number"},
		{"MAX_CONNECTIONS", "-1", "between"},
		{"MAX_CONNECTIONS", "99999999999999999999", "whole number"},
		{"MAX_MESSAGE_SIZE", "1GiB", "not a size"},
		{"MAX_MESSAGE_SIZE", "1MB", "not a size"},
		{"MAX_MESSAGE_SIZE", "1.5MiB", "not a size"},
		{"MAX_MESSAGE_SIZE", "64kib", "not a size"},
		{"MAX_MESSAGE_SIZE", "124", "between 125"},
		{"MAX_MESSAGE_SIZE", "65MiB", "between"},
		{"MAX_MESSAGE_SIZE", "-1K", "between"},
		{"OUTBOUND_QUEUE_CAP", "1K", "between 4096"},
		{"OUTBOUND_QUEUE_CAP", "257M", "between"},
		{"HELLO_TIMEOUT", "30", "not a duration"},
		{"HELLO_TIMEOUT", "99ms", "between"},
		{"HELLO_TIMEOUT", "2h", "between"},
		{"PING_INTERVAL", "soon", "not a duration"},
		{"PONG_TIMEOUT", "0s", "between"},
		{"WRITE_TIMEOUT", "-5s", "between"},
		{"HANDSHAKE_TIMEOUT", "10 s", "not a duration"},
		{"HTTP_IDLE_TIMEOUT", "25h", "between"},
		{"DRAIN_TIMEOUT", "1d", "not a duration"},
		{"DRAIN_SPREAD", "-1s", "between"},
		{"RECONNECT_JITTER", "2h", "between"},
		{"LOG_LEVEL", "verbose", "debug, info, warn or error"},
		{"LOG_FORMAT", "xml", "text or json"},
	} {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			m := cfgProd(tc.key, tc.value)
			if tc.key == "DJANGO_DEBUG" {
				delete(m, "DEBUG")
			}
			msg := cfgLoadErr(t, m)
			if !strings.Contains(msg, tc.key+"=") || !strings.Contains(msg, tc.want) {
				t.Fatalf("error does not name %s=… with %q:\n%s", tc.key, tc.want, msg)
			}
			if strings.Count(msg, "\n") != 0 {
				t.Fatalf("one bad value, several problems reported:\n%s", msg)
			}
		})
	}
}

func TestConfigAllErrorsAtOnce(t *testing.T) {
	m := map[string]string{
		"DEBUG":            "0",
		"SECRET_KEY":       "changeme",
		"EVENT_LOOPS":      "many",
		"MAX_MESSAGE_SIZE": "huge",
		"HELLO_TIMEOUT":    "30",
		"DRAIN_SPREAD":     "-1s",
		"LOG_LEVEL":        "loud",
		"LOG_FORMAT":       "yaml",
	}
	_, err := loadConfig(cfgEnv(m))
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, key := range []string{"SECRET_KEY", "ALLOWED_HOSTS", "EVENT_LOOPS=", "MAX_MESSAGE_SIZE=", "HELLO_TIMEOUT=", "DRAIN_SPREAD=", "LOG_LEVEL=", "LOG_FORMAT="} {
		if !strings.Contains(msg, key) {
			t.Errorf("error does not report %s:\n%s", key, msg)
		}
	}
	if n := strings.Count(msg, "\n") + 1; n != 8 {
		t.Errorf("%d problems reported, want 8:\n%s", n, msg)
	}
}

func TestConfigSizes(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  int
	}{
		{"125", 125},
		{"65536", 65536},
		{"64KiB", 64 << 10},
		{"64K", 64 << 10},
		{"1MiB", 1 << 20},
		{"2M", 2 << 20},
		{"64MiB", 64 << 20},
		{" 512 KiB ", 512 << 10},
		{"0001K", 1 << 10},
	} {
		t.Run(tc.value, func(t *testing.T) {
			c := cfgLoad(t, cfgProd("MAX_MESSAGE_SIZE", tc.value))
			if c.Edge.MaxMessageSize != tc.want {
				t.Fatalf("MAX_MESSAGE_SIZE=%q gave %d, want %d", tc.value, c.Edge.MaxMessageSize, tc.want)
			}
		})
	}
	small := cfgProd("OUTBOUND_QUEUE_CAP", "8KiB", "MAX_MESSAGE_SIZE", "1KiB", "PRESENCE_MAX_MEMBERS", "2")
	if c := cfgLoad(t, small); c.Edge.OutboundCap != 8192 {
		t.Fatalf("OUTBOUND_QUEUE_CAP=8KiB gave %d", c.Edge.OutboundCap)
	}
}

// The outbound cap must hold the largest frame the server sends for one
// request: unset, it is raised to that floor; set below it, start-up fails
// with the floor in the message.
func TestConfigOutboundCapFloor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    int // 0: an error is expected
		wantErr string
	}{
		{name: "default holds a max-size echo and a full presence answer", env: cfgProd(), want: 2 << 20},
		{name: "raised for a larger message size", env: cfgProd("MAX_MESSAGE_SIZE", "4MiB"), want: 4<<20 + 1024 + 4096},
		{name: "raised for a larger presence answer", env: cfgProd("PRESENCE_MAX_MEMBERS", "5000"), want: 512 + 5000*1440 + 4096},
		{name: "explicit cap below an echo", env: cfgProd("OUTBOUND_QUEUE_CAP", "1MiB"), wantErr: "outbound cap 1048576 is below 1444608"},
		{name: "explicit cap below a presence answer", env: cfgProd("OUTBOUND_QUEUE_CAP", "64KiB", "MAX_MESSAGE_SIZE", "16KiB"),
			wantErr: "outbound cap 65536 is below"},
		{name: "explicit cap at the floor", env: cfgProd("OUTBOUND_QUEUE_CAP", "1444608"), want: 1444608},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.wantErr != "" {
				if msg := cfgLoadErr(t, tc.env); !strings.Contains(msg, tc.wantErr) {
					t.Fatalf("error %q does not mention %q", msg, tc.wantErr)
				}
				return
			}
			c := cfgLoad(t, tc.env)
			if c.Edge.OutboundCap != tc.want {
				t.Fatalf("outbound cap %d, want %d", c.Edge.OutboundCap, tc.want)
			}
			if c.Edge.OutboundCap < c.Edge.MinOutboundCap() {
				t.Fatalf("cap %d below its floor %d", c.Edge.OutboundCap, c.Edge.MinOutboundCap())
			}
		})
	}
}

// The hardening settings reach edge.Config and are checked.
func TestConfigHardeningSettings(t *testing.T) {
	c := cfgLoad(t, cfgProd("FRAME_TIMEOUT", "3s", "BYTE_RATE", "64KiB", "BYTE_BURST", "2MiB", "PRESENCE_MAX_MEMBERS", "50"))
	if c.Edge.FrameTimeout != 3*time.Second || c.Edge.ByteRate != 64<<10 || c.Edge.ByteBurst != 2<<20 || c.Edge.PresenceMaxMembers != 50 {
		t.Fatalf("got frame timeout %v, byte rate %d, burst %d, presence max %d",
			c.Edge.FrameTimeout, c.Edge.ByteRate, c.Edge.ByteBurst, c.Edge.PresenceMaxMembers)
	}
	if d := cfgLoad(t, cfgProd()).Edge; d.FrameTimeout != 10*time.Second || d.FrameTimeout >= d.PongTimeout {
		t.Fatalf("default frame timeout %v, pong timeout %v", d.FrameTimeout, d.PongTimeout)
	}
	if c := cfgLoad(t, cfgProd("MAX_MESSAGE_SIZE", "8MiB")); c.Edge.ByteBurst != 16<<20 {
		t.Fatalf("byte burst %d for an 8 MiB message size, want twice it", c.Edge.ByteBurst)
	}
	if c := cfgLoad(t, cfgProd("BYTE_RATE", "0")); c.Edge.ByteRate != 0 {
		t.Fatalf("BYTE_RATE=0 gave %d", c.Edge.ByteRate)
	}
	for _, env := range []map[string]string{
		cfgProd("BYTE_BURST", "1KiB"), // below MAX_MESSAGE_SIZE
		cfgProd("PRESENCE_MAX_MEMBERS", "0"),
		cfgProd("FRAME_TIMEOUT", "0s"),
	} {
		cfgLoadErr(t, env)
	}
}

// A size whose multiplication by its suffix overflows int must be refused,
// not wrap around into the allowed range: 17592186044417MiB is 2^64 + 2^20
// bytes, which wraps to exactly 1 MiB.
func TestConfigSizeOverflow(t *testing.T) {
	for _, v := range []string{"17592186044417MiB", "18014398509481985K", "9223372036854775807KiB"} {
		msg := cfgLoadErr(t, cfgProd("MAX_MESSAGE_SIZE", v))
		if !strings.Contains(msg, "MAX_MESSAGE_SIZE=") {
			t.Fatalf("MAX_MESSAGE_SIZE=%s: error does not name the variable: %s", v, msg)
		}
	}
}

func TestConfigSweepInterval(t *testing.T) {
	for _, tc := range []struct {
		name         string
		kv           []string
		sweep, close time.Duration
	}{
		{"defaults", nil, time.Second, 5 * time.Second},
		{"short hello", []string{"HELLO_TIMEOUT", "2s"}, 500 * time.Millisecond, 5 * time.Second},
		{"shortest hello", []string{"HELLO_TIMEOUT", "100ms"}, 25 * time.Millisecond, 5 * time.Second},
		{"short ping", []string{"PING_INTERVAL", "400ms"}, 100 * time.Millisecond, 5 * time.Second},
		{"short pong", []string{"PONG_TIMEOUT", "1s"}, 250 * time.Millisecond, 5 * time.Second},
		{"short handshake", []string{"HANDSHAKE_TIMEOUT", "200ms"}, 50 * time.Millisecond, 5 * time.Second},
		{"the smallest wins", []string{"HELLO_TIMEOUT", "3s", "PONG_TIMEOUT", "800ms", "HANDSHAKE_TIMEOUT", "2s"}, 200 * time.Millisecond, 5 * time.Second},
		{"long timeouts keep one second", []string{"HELLO_TIMEOUT", "1h", "PING_INTERVAL", "1h"}, time.Second, 5 * time.Second},
		{"write timeout bounds the close wait", []string{"WRITE_TIMEOUT", "1s"}, time.Second, time.Second},
		{"long write timeout", []string{"WRITE_TIMEOUT", "1m"}, time.Second, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfgLoad(t, cfgProd(tc.kv...))
			if c.Edge.SweepInterval != tc.sweep || c.Edge.CloseTimeout != tc.close {
				t.Fatalf("sweep %v close %v, want %v %v", c.Edge.SweepInterval, c.Edge.CloseTimeout, tc.sweep, tc.close)
			}
		})
	}
}

func TestConfigFlags(t *testing.T) {
	base := cfgProd("ADDR", "10.0.0.1:8000", "DEBUG", "0", "MAX_MESSAGE_SIZE", "64K")
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		check func(c config) bool
	}{
		{"no flags: environment", nil, base, func(c config) bool {
			return c.Edge.Addr == "10.0.0.1:8000" && !c.Edge.Debug && c.Edge.MaxMessageSize == 64<<10
		}},
		{"-addr overrides ADDR", []string{"-addr", "127.0.0.1:7000"}, base, func(c config) bool { return c.Edge.Addr == "127.0.0.1:7000" }},
		{"--addr= form", []string{"--addr=127.0.0.1:7001"}, base, func(c config) bool { return c.Edge.Addr == "127.0.0.1:7001" }},
		{"-debug=1 overrides DEBUG=0", []string{"-debug=1"}, base, func(c config) bool { return c.Edge.Debug }},
		{"-debug 0 overrides DJANGO_DEBUG=1", []string{"-debug", "0"}, cfgProd("DJANGO_DEBUG", "1"), func(c config) bool { return !c.Edge.Debug }},
		{"-debug lets a placeholder secret through", []string{"-debug=true"}, map[string]string{"SECRET_KEY": "dev"}, func(c config) bool { return c.Edge.Debug }},
		{"-max-message-size", []string{"-max-message-size", "2MiB"}, base, func(c config) bool { return c.Edge.MaxMessageSize == 2<<20 }},
		{"-allowed-hosts overrides DJANGO_ALLOWED_HOSTS", []string{"-allowed-hosts", "x.com,.y.com"}, map[string]string{"SECRET_KEY": cfgSecret, "DJANGO_ALLOWED_HOSTS": "z.com"}, func(c config) bool {
			return reflect.DeepEqual(c.Edge.AllowedHosts, []string{"x.com", ".y.com"})
		}},
		{"-hello-timeout and -admin-addr", []string{"-hello-timeout", "5s", "-admin-addr", ":9999"}, base, func(c config) bool {
			return c.Edge.HelloTimeout == 5*time.Second && c.AdminAddr == ":9999" && c.Edge.SweepInterval == time.Second
		}},
		{"flags not given keep the environment", []string{"-instance-id", "a"}, base, func(c config) bool {
			return c.Edge.InstanceID == "a" && c.Edge.Addr == "10.0.0.1:8000"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := parseFlags(tc.args, cfgEnv(tc.env))
			if err != nil {
				t.Fatalf("parseFlags(%q): %v", tc.args, err)
			}
			c, err := loadConfig(e)
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if !tc.check(c) {
				t.Fatalf("unexpected config: %+v", c)
			}
		})
	}
}

func TestConfigFlagErrors(t *testing.T) {
	empty := cfgEnv(nil)
	if _, err := parseFlags([]string{"-h"}, empty); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
	}
	for _, args := range [][]string{
		{"-no-such-flag"},
		{"-addr"}, // missing value
		{"serve"},
		{"-addr", ":1", "extra"},
	} {
		if _, err := parseFlags(args, empty); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
	// A flag value is validated like the variable it stands for.
	e, err := parseFlags([]string{"-hello-timeout", "forever"}, cfgEnv(cfgProd()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadConfig(e); err == nil || !strings.Contains(err.Error(), "HELLO_TIMEOUT=") {
		t.Fatalf("bad -hello-timeout: %v", err)
	}
	// An explicitly empty -addr overrides ADDR and is refused by validation.
	e, err = parseFlags([]string{"-addr="}, cfgEnv(cfgProd("ADDR", ":8000")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadConfig(e); err == nil || !strings.Contains(err.Error(), "listen address") {
		t.Fatalf("empty -addr: %v", err)
	}
}

// Every setting but the secrets has a flag, and no two settings share one;
// secrets have none, so they never show in the process list.
func TestConfigSettingsHaveFlags(t *testing.T) {
	seen := map[string]string{}
	for _, s := range settings {
		name := flagName(s.key)
		if s.secret {
			if _, err := parseFlags([]string{"-" + name + "=v"}, cfgEnv(nil)); err == nil {
				t.Fatalf("secret %s has a flag", s.key)
			}
			continue
		}
		if other, dup := seen[name]; dup {
			t.Fatalf("%s and %s map to -%s", s.key, other, name)
		}
		seen[name] = s.key
		e, err := parseFlags([]string{"-" + name + "=v"}, cfgEnv(nil))
		if err != nil {
			t.Fatalf("-%s: %v", name, err)
		}
		if v, ok := e(s.key); !ok || v != "v" {
			t.Fatalf("-%s did not set %s", name, s.key)
		}
	}
}

// DEBUG=0 without AUTH_API_KEY starts, with a warning that the API is open.
func TestConfigWarnings(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"production without API key", cfgProd(), true},
		{"production with API key", cfgProd("AUTH_API_KEY", "k"), false},
		{"debug without API key", map[string]string{"DEBUG": "1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			cfgLoad(t, tc.env).warnings(slog.New(slog.NewTextHandler(&buf, nil)))
			got := strings.Contains(buf.String(), "level=WARN") && strings.Contains(buf.String(), "AUTH_API_KEY")
			if got != tc.want {
				t.Fatalf("warning logged: %v, want %v: %q", got, tc.want, buf.String())
			}
		})
	}
}
