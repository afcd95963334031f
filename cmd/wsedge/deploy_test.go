package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// deploy/wsedge.sysusers creates the user and group deploy/wsedge.service
// runs as: systemd-sysusers applies it to an empty root, and the unit's
// User=/Group= must exist there, without a login shell.
func TestDeploySysusersCreatesServiceUser(t *testing.T) {
	unit, err := os.ReadFile("../../deploy/wsedge.service")
	if err != nil {
		t.Fatal(err)
	}
	field := func(key string) string {
		m := regexp.MustCompile(`(?m)^` + key + `=(\S+)$`).FindSubmatch(unit)
		if m == nil {
			t.Fatalf("wsedge.service has no %s=", key)
		}
		return string(m[1])
	}
	user, group := field("User"), field("Group")

	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf, err := filepath.Abs("../../deploy/wsedge.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemd-sysusers", "--root="+root, conf).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	groups, err := os.ReadFile(filepath.Join(root, "etc", "group"))
	if err != nil {
		t.Fatal(err)
	}
	var entry []string
	for _, l := range strings.Split(string(passwd), "\n") {
		if f := strings.Split(l, ":"); len(f) == 7 && f[0] == user {
			entry = f
		}
	}
	if entry == nil {
		t.Fatalf("no user %q in\n%s", user, passwd)
	}
	if !strings.HasSuffix(entry[6], "nologin") {
		t.Errorf("user %s has login shell %q", user, entry[6])
	}
	if !regexp.MustCompile(`(?m)^` + group + `:x:` + entry[3] + `:`).Match(groups) {
		t.Errorf("group %q (gid %s) missing:\n%s", group, entry[3], groups)
	}
}
