package main

import (
	"fmt"
	"strings"
)

// With DEBUG=0 a secret (SECRET_KEY, CSRF_SECRET_KEY) must:
//   - not be a value this repository ships in an example or a document
//     (exampleSecrets; TestExampleSecretsRefused reads the files and fails
//     when one is missing here),
//   - not look like a placeholder (placeholderMarks, Django's
//     "django-insecure-" prefix),
//   - be at least minSecretLen characters long, with at least
//     minSecretDistinct different characters, none of which makes up more
//     than a quarter of it (so "aaaa…" or "abab…" of any length is refused).
//
// `openssl rand -base64 48` or Django's get_random_secret_key() (50
// characters) pass with a wide margin.
const (
	minSecretLen      = 32
	minSecretDistinct = 10
)

// exampleSecrets are the secret values shipped in deploy/*.example, the
// README and docs/, lower-cased.
var exampleSecrets = []string{
	"replace-with-a-long-random-secret",
}

// placeholderMarks are fragments that no generated secret contains by
// chance but every hand-written placeholder seems to.
var placeholderMarks = []string{
	"change-me", "changeme", "change_me", "replace-with", "replace_with", "replaceme", "replace-me",
	"placeholder", "example", "your-secret", "your_secret", "insecure", "not-secret", "notsecret",
}

// weakSecret returns why s must not be used as a production secret, or "".
func weakSecret(s string) string {
	l := strings.ToLower(strings.TrimSpace(s))
	for _, ex := range exampleSecrets {
		if l == ex {
			return "is the example value shipped with wsedge"
		}
	}
	for _, m := range placeholderMarks {
		if strings.Contains(l, m) {
			return fmt.Sprintf("looks like a placeholder (contains %q)", m)
		}
	}
	counts := map[rune]int{}
	n := 0
	for _, r := range s {
		counts[r]++
		n++
	}
	if n < minSecretLen {
		return fmt.Sprintf("is shorter than %d characters", minSecretLen)
	}
	if len(counts) < minSecretDistinct {
		return fmt.Sprintf("has fewer than %d different characters", minSecretDistinct)
	}
	for _, c := range counts {
		if c*4 > n {
			return "repeats one character too often (more than a quarter of it)"
		}
	}
	return ""
}

// exampleAPIKey reports whether an AUTH_API_KEY is a value shipped in the
// repository's examples; API keys of the original deployment may be short,
// so only examples are refused.
func exampleAPIKey(s string) bool {
	l := strings.ToLower(strings.TrimSpace(s))
	for _, ex := range exampleSecrets {
		if l == ex {
			return true
		}
	}
	return false
}
