package jointoken

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// python is Debian's interpreter, where .ci/deps installs python3-jwt.
const python = "/usr/bin/python3"

// The Python minting example of docs/SECURITY.md, run as written, makes a
// token this package accepts.
func TestSecurityDocPythonExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/SECURITY.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```python\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/SECURITY.md has no python example")
	}
	if err := exec.Command(python, "-c", "import jwt").Run(); err != nil {
		t.Fatalf("%s cannot import jwt (%v); run as root: apt-get install -y python3-jwt (or bash .ci/deps)", python, err)
	}
	prog := string(m[1]) + "\nprint(join_token(" + `"` + string(secret) + `", "room-1", "agent", "u-1"))` + "\n"
	out, err := exec.Command(python, "-c", prog).CombinedOutput()
	if err != nil {
		t.Fatalf("python example: %v\n%s", err, out)
	}
	v, err := New(Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("token from the python example refused: %v", err)
	}
	if !c.Covers("room-1") || c.UserType != "agent" || c.Subject != "u-1" {
		t.Fatalf("claims %+v", c)
	}
}

// The Go minting example of docs/SECURITY.md, compiled and run as written
// (inside this module, so with the jwt version wsedge pins), makes a token
// this package accepts.
func TestSecurityDocGoExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/SECURITY.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```go\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/SECURITY.md has no go example")
	}
	// testdata: inside the module, ignored by ./... patterns.
	dir, err := os.MkdirTemp("testdata", "go-example-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	prog := "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\n" + string(m[1]) + `
func main() {
	tok, err := joinToken([]byte(os.Args[1]), "room-1", "agent", "u-1")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(tok)
}
`
	if err := os.WriteFile(dir+"/main.go", []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "run", "./"+dir, string(secret)).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go example: %v\n%s\n%s", err, stderr, prog)
	}
	v, err := New(Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("token from the go example refused: %v", err)
	}
	if !c.Covers("room-1") || c.UserType != "agent" || c.Subject != "u-1" || time.Until(c.Expires) < 9*time.Minute {
		t.Fatalf("claims %+v", c)
	}
}
