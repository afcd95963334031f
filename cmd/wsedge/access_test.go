package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestAccessConfig(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	keyFile := filepath.Join(t.TempDir(), "join.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	c := cfgLoad(t, cfgProd("SESSION_TOKEN_PUBLIC_KEY", keyFile, "SESSION_TOKEN_SECRET", strings.Repeat("s", 32),
		"TRUSTED_PROXIES", " 10.0.0.0/16, 192.168.1.7 ,fd00::/8", "CONNECT_RATE_PER_IP", "2.5",
		"MAX_CONNECTIONS_PER_IP", "50", "MAX_SESSION_MEMBERS", "100", "SESSION_BROADCAST_RATE", "20"))
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16"), netip.MustParsePrefix("192.168.1.7/32"), netip.MustParsePrefix("fd00::/8")}
	if !reflect.DeepEqual(c.Edge.TrustedProxies, want) {
		t.Errorf("trusted proxies %v", c.Edge.TrustedProxies)
	}
	if c.Edge.ConnectRatePerIP != 2.5 || c.Edge.ConnectBurstPerIP != 3 || c.Edge.MaxConnectionsPerIP != 50 ||
		c.Edge.MaxSessionMembers != 100 || c.Edge.SessionBroadcastRate != 20 || c.Edge.SessionBroadcastBurst != 20 {
		t.Errorf("limits %+v", c.Edge)
	}
	if len(c.Tokens.PublicKeyPEM) == 0 || len(c.Tokens.Secret) != 32 {
		t.Errorf("token keys not loaded")
	}
	off := cfgLoad(t, cfgProd())
	if len(off.Tokens.Secret) != 0 || off.Tokens.PublicKeyPEM != nil || off.Edge.TrustedProxies != nil || off.Edge.MaxConnectionsPerIP != 0 {
		t.Errorf("access control on by default: %+v", off.Tokens)
	}

	for _, tc := range []struct{ name, key, val, want string }{
		{"short secret", "SESSION_TOKEN_SECRET", "short", "at least 32 bytes"},
		{"missing key file", "SESSION_TOKEN_PUBLIC_KEY", "/nonexistent/key.pem", "SESSION_TOKEN_PUBLIC_KEY"},
		{"bad CIDR", "TRUSTED_PROXIES", "10.0.0.0/33", "TRUSTED_PROXIES"},
		{"negative rate", "CONNECT_RATE_PER_IP", "-1", "CONNECT_RATE_PER_IP"},
		{"NaN rate", "SESSION_BROADCAST_RATE", "NaN", "SESSION_BROADCAST_RATE"},
		{"grace too short", "TOKEN_EXPIRY_GRACE", "1ms", "TOKEN_EXPIRY_GRACE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg := cfgLoadErr(t, cfgProd(tc.key, tc.val)); !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not name %q", msg, tc.want)
			}
		})
	}
}
