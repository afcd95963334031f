package apikey

import (
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	const key = "s3cr3t-key"
	for _, tc := range []struct {
		name          string
		key           string
		header, query string
		want          bool
	}{
		{"no key required", "", "", "", true},
		{"no key required, junk given", "", "whatever", "x", true},
		{"header", key, key, "", true},
		{"bearer header", key, "Bearer " + key, "", true},
		{"lower-case bearer", key, "bearer " + key, "", true},
		{"upper-case bearer, extra spaces", key, "  BEARER   " + key + "  ", "", true},
		{"query", key, "", key, true},
		{"query with spaces", key, "", " " + key + " ", true},
		{"wrong header, right query", key, "nope", key, true},
		{"right header, wrong query", key, key, "nope", true},
		{"bearer in query", key, "", "Bearer " + key, true},
		{"nothing given", key, "", "", false},
		{"wrong header", key, "nope", "", false},
		{"wrong query", key, "", "nope", false},
		{"prefix of key", key, key[:len(key)-1], "", false},
		{"key with suffix", key, key + "x", "", false},
		{"different case", key, strings.ToUpper(key), "", false},
		{"other scheme", key, "Token " + key, "", false},
		{"bearer without space", key, "Bearer" + key, "", false},
		{"bearer alone", key, "Bearer ", "", false},
		{"only spaces", key, "   ", "   ", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Match(tc.key, []byte(tc.header), []byte(tc.query)); got != tc.want {
				t.Fatalf("Match(%q, %q, %q) = %v, want %v", tc.key, tc.header, tc.query, got, tc.want)
			}
		})
	}
	// nil slices, as fasthttp's Peek returns for a missing header.
	if Match(key, nil, nil) {
		t.Fatal("authorized with no header and no query")
	}
	if !Match("", nil, nil) {
		t.Fatal("refused with no key configured")
	}
}
