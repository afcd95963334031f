package ids

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   string
		want bool
	}{
		{"digits", "11", true},
		{"one char", "a", true},
		{"every allowed class", "AZaz09_.:-", true},
		{"uuid", "3f2b8c1e-7d4a-4e8b-9c2d-1a2b3c4d5e6f", true},
		{"dots only", "..", true},
		{"128 chars", strings.Repeat("x", 128), true},
		{"empty", "", false},
		{"129 chars", strings.Repeat("x", 129), false},
		{"slash", "a/b", false},
		{"space", "a b", false},
		{"percent", "a%20b", false},
		{"query", "a?b", false},
		{"plus", "a+b", false},
		{"at", "a@b", false},
		{"quote", `a"b`, false},
		{"backslash", `a\b`, false},
		{"non-ascii letter", "café", false},
		{"nul", "a\x00", false},
		{"newline", "a\n", false},
		{"tab", "\ta", false},
		{"high byte", "\xff", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Valid(tc.id); got != tc.want {
				t.Fatalf("Valid(%q) = %v, want %v", tc.id, got, tc.want)
			}
		})
	}
}
