package jointoken

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
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
