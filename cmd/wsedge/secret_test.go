package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestWeakSecret(t *testing.T) {
	for _, tc := range []struct {
		secret string
		weak   bool
	}{
		{"", true},
		{"   ", true},
		{"changeme", true},
		{"CHANGEME-0123456789abcdefghijklmnopqrstuv", true},
		{"replace-with-a-long-random-secret", true},
		{"REPLACE-WITH-A-LONG-RANDOM-SECRET", true},
		{"please-change-me-in-production-0123456789", true},
		{"django-insecure-9f$k2#x!p0q@w8e7r6t5y4u3i2o1zz", true},
		{"Django-Insecure-0123456789abcdefghijklmnopq", true},
		{"an-example-secret-for-the-docs-0123456789", true},
		{"your-secret-key-goes-here-0123456789abcdef", true},
		{"abcdefghijklmnop", true},                         // 16 characters: too short now
		{"q7X2mZ9rT4vB1nK8wE5yH3jL6pD0sF9", true},          // 31
		{strings.Repeat("a", 64), true},                    // one character
		{strings.Repeat("ab", 32), true},                   // two
		{strings.Repeat("abcdefghi", 8), true},             // nine different
		{"aaaaaaaaaaaaaaaaaaaabcdefghijklmnopqrstu", true}, // 'a' is half of it
		{"q7X2mZ9rT4vB1nK8wE5yH3jL6pD0sF9g", false},        // 32
		{cfgSecret, false},
		{"Xk8s0P1vBvM2w3d+fN4qLr7T9yZcA6eJhU5gWi0oR3sE=", false},                    // openssl rand -base64 33
		{"8f14e45fceea167a5a36dedd4bea2543b1b4c5d6e7f8091a2b3c4d5e6f708192", false}, // hex
		{"w!3$k9@z#1^q&7*r(5)t_2+y-8=u[4]i{6}o|0;p:a'b,c.d/e", false},               // Django's alphabet
	} {
		if got := weakSecret(tc.secret) != ""; got != tc.weak {
			t.Errorf("weakSecret(%q) = %q, want weak=%v", tc.secret, weakSecret(tc.secret), tc.weak)
		}
	}
}

// secretAssignment finds KEY=value and key: value forms of the secrets
// wsedge checks, in env files, Markdown, YAML and shell alike.
var secretAssignment = regexp.MustCompile(
	"(?i)\\b((?:django_)?secret_key|csrf_secret_key|auth_api_key|secretKey|csrfSecretKey|authApiKey)[\"']?[ \\t]*[:=][ \\t]*[\"'`]?([^\\s\"'`,;)|]+)")

// notAValue are elisions and references, not values anyone could deploy:
// "...", "<your key>", "$(openssl rand …)", "${SECRET_KEY}", "{{ .Values… }}",
// and the name of another variable or Secret key ("secretKey: SECRET_KEY" in
// the chart's values names the key inside a Kubernetes Secret).
var notAValue = regexp.MustCompile(`^(?:[.…*x-]+|[<${(].*|[A-Z][A-Z0-9_]*)$`)

// Every secret value the repository ships, in any file but Go source, is
// refused with DEBUG=0: the list in secret.go is checked against the files.
func TestExampleSecretsRefused(t *testing.T) {
	root := filepath.Join("..", "..")
	type found struct{ where, key, value string }
	var all []found
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			switch name {
			case ".git", "bin", "node_modules", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(name) {
		case ".go", ".sum", ".mod", ".png", ".svg", ".json":
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil || len(b) > 1<<20 || bytes.IndexByte(b, 0) >= 0 {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, m := range secretAssignment.FindAllStringSubmatch(line, -1) {
				if notAValue.MatchString(m[2]) {
					continue
				}
				rel, _ := filepath.Rel(root, path)
				all = append(all, found{where: rel + ":" + strconv.Itoa(i+1), key: m[1], value: m[2]})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sawEnvExample := false
	for _, f := range all {
		t.Logf("%s: %s=%s", f.where, f.key, f.value)
		if strings.HasPrefix(f.where, filepath.Join("deploy", "wsedge.env.example")) {
			sawEnvExample = true
		}
		if strings.Contains(strings.ToLower(f.key), "api") {
			_, err := loadConfig(cfgEnv(cfgProd("AUTH_API_KEY", f.value)))
			if err == nil || !strings.Contains(err.Error(), "AUTH_API_KEY") {
				t.Errorf("%s: AUTH_API_KEY=%s is accepted with DEBUG=0: add it to exampleSecrets in secret.go (%v)", f.where, f.value, err)
			}
			continue
		}
		for _, key := range []string{"SECRET_KEY", "DJANGO_SECRET_KEY", "CSRF_SECRET_KEY"} {
			env := cfgProd(key, f.value)
			if key == "DJANGO_SECRET_KEY" {
				delete(env, "SECRET_KEY")
			}
			_, err := loadConfig(cfgEnv(env))
			if err == nil || !strings.Contains(err.Error(), key) {
				t.Errorf("%s: %s=%s is accepted with DEBUG=0: add it to exampleSecrets in secret.go (%v)", f.where, key, f.value, err)
			}
		}
	}
	if !sawEnvExample {
		t.Fatalf("found no SECRET_KEY in deploy/wsedge.env.example: the scan is broken (found %v)", all)
	}
}
