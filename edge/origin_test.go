package edge

import "testing"

// Django's ALLOWED_HOSTS rules as Channels' AllowedHostsOriginValidator
// applies them to the Origin header (PROTOCOL.md §4).
func TestOriginAllowed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		origin  string
		allowed []string
		want    bool
	}{
		{"exact host", "https://example.com", []string{"example.com"}, true},
		{"exact host, http", "http://example.com", []string{"example.com"}, true},
		{"exact host, any port", "https://example.com:8443", []string{"example.com"}, true},
		{"exact host among several", "https://b.example.org", []string{"a.example.org", "b.example.org"}, true},
		{"other host", "https://evil.com", []string{"example.com"}, false},
		{"subdomain needs a dot pattern", "https://www.example.com", []string{"example.com"}, false},
		{"suffix is not a match", "https://badexample.com", []string{"example.com"}, false},
		{"origin host upper case", "https://EXAMPLE.com", []string{"example.com"}, true},
		{"pattern upper case", "https://example.com", []string{"Example.COM"}, true},
		{"pattern with spaces", "https://example.com", []string{"  example.com "}, true},
		{"empty pattern is skipped", "https://example.com", []string{"", "example.com"}, true},
		{"only an empty pattern", "https://example.com", []string{""}, false},

		{"dot pattern matches the domain", "https://example.com", []string{".example.com"}, true},
		{"dot pattern matches a subdomain", "https://www.example.com", []string{".example.com"}, true},
		{"dot pattern matches a deep subdomain", "https://a.b.c.example.com", []string{".example.com"}, true},
		{"dot pattern, upper-case origin", "https://WWW.Example.Com", []string{".example.com"}, true},
		{"dot pattern does not match badexample.com", "https://badexample.com", []string{".example.com"}, false},
		{"dot pattern does not match example.com.evil.org", "https://example.com.evil.org", []string{".example.com"}, false},
		{"dot pattern does not match the parent", "https://com", []string{".example.com"}, false},

		{"star", "https://anything.test", []string{"*"}, true},
		{"star among others", "https://anything.test", []string{"example.com", "*"}, true},
		{"star allows a missing origin", "", []string{"*"}, true},
		{"star allows null", "null", []string{"*"}, true},
		{"star is not a wildcard inside a pattern", "https://a.example.com", []string{"*.example.com"}, false},
		{"no patterns", "https://example.com", nil, false},

		{"pattern port matches", "http://localhost:8000", []string{"localhost:8000"}, true},
		{"pattern port differs", "http://localhost:3000", []string{"localhost:8000"}, false},
		{"pattern port, origin without port", "http://localhost", []string{"localhost:8000"}, false},
		{"dot pattern with port", "http://api.example.com:8000", []string{".example.com:8000"}, true},
		{"dot pattern with another port", "http://api.example.com:9000", []string{".example.com:8000"}, false},

		{"missing origin", "", []string{"example.com"}, false},
		{"null origin", "null", []string{"example.com"}, false},
		{"null origin with null pattern", "null", []string{"null"}, false},
		{"origin without scheme", "example.com", []string{"example.com"}, false},
		{"scheme only", "https://", []string{"example.com"}, false},
		{"port without host", "http://:8000", []string{"example.com"}, false},
		{"malformed url", "http://exa mple.com", []string{"exa mple.com"}, false},
		{"bad percent escape", "http://%zz", []string{"%zz"}, false},
		{"control character", "http://example.com\x7f", []string{"example.com"}, false},
		{"path after host", "https://example.com/path", []string{"example.com"}, true},
		{"userinfo is not the host", "https://example.com@evil.com", []string{"example.com"}, false},

		{"ipv4", "http://127.0.0.1:8000", []string{"127.0.0.1"}, true},
		{"ipv4 other address", "http://127.0.0.2:8000", []string{"127.0.0.1"}, false},
		{"ipv6 with port in pattern", "http://[::1]:8000", []string{"[::1]:8000"}, true},
		{"ipv6 with another port in pattern", "http://[::1]:9000", []string{"[::1]:8000"}, false},
		{"ipv6 other address", "http://[::2]:8000", []string{"[::1]:8000"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := originAllowed(tc.origin, tc.allowed); got != tc.want {
				t.Fatalf("originAllowed(%q, %q) = %v, want %v", tc.origin, tc.allowed, got, tc.want)
			}
		})
	}
}

// Django writes IPv6 hosts in ALLOWED_HOSTS with brackets ("[::1]" is in
// its DEBUG default); Channels strips them (urlparse("//[::1]").hostname)
// before comparing with the Origin's host, so a bracketed pattern without a
// port must match.
func TestOriginAllowedIPv6Brackets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		origin  string
		allowed []string
		want    bool
	}{
		{"bracketed pattern, origin with port", "http://[::1]:8000", []string{"[::1]"}, true},
		{"bracketed pattern, origin without port", "http://[::1]", []string{"[::1]"}, true},
		{"upper-case hex in origin", "http://[FE80::1]", []string{"[fe80::1]"}, true},
		{"other address", "http://[::2]", []string{"[::1]"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := originAllowed(tc.origin, tc.allowed); got != tc.want {
				t.Fatalf("originAllowed(%q, %q) = %v, want %v", tc.origin, tc.allowed, got, tc.want)
			}
		})
	}
}

// sameDomain is Django's django.utils.http.is_same_domain; host and pattern
// arrive lower-cased.
func TestSameDomain(t *testing.T) {
	for _, tc := range []struct {
		host, pattern string
		want          bool
	}{
		{"example.com", "example.com", true},
		{"www.example.com", "example.com", false},
		{"example.com", ".example.com", true},
		{"www.example.com", ".example.com", true},
		{"a.b.example.com", ".example.com", true},
		{"badexample.com", ".example.com", false},
		{"example.com.evil.org", ".example.com", false},
		{"xexample.com", "example.com", false},
		{"example.com", "", false},
		{"", "", false},
		{"com", ".example.com", false},
		{"example.co", "example.com", false},
		{"example.com", "example.co", false},
	} {
		if got := sameDomain(tc.host, tc.pattern); got != tc.want {
			t.Errorf("sameDomain(%q, %q) = %v, want %v", tc.host, tc.pattern, got, tc.want)
		}
	}
}
