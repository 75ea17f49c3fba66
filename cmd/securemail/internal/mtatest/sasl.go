package mtatest

import (
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"testing"
)

// WriteSASLDB creates a Cyrus sasldb at path with one user, for the
// auxprop/sasldb password check with PLAIN and LOGIN. A name of the form
// local@domain is stored as user "local" in realm "domain", which is what
// Cyrus looks up when the client logs in as local@domain. The file is made
// readable by group (the group the MTA's SMTP server runs as, e.g. "postfix")
// and by nobody else.
func WriteSASLDB(t testing.TB, path, name, password, group string) {
	t.Helper()
	realm := ""
	if at := strings.LastIndexByte(name, '@'); at >= 0 {
		name, realm = name[:at], name[at+1:]
	}
	bin, err := LookTool("saslpasswd2")
	if err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	args := []string{"-p", "-c", "-f", path}
	if realm != "" {
		args = append(args, "-u", realm)
	}
	cmd := exec.Command(bin, append(args, name)...)
	cmd.Stdin = strings.NewReader(password)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mtatest: saslpasswd2: %v\n%s", err, out)
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		t.Fatalf("mtatest: sasldb group: %v", err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		t.Fatalf("mtatest: sasldb group %s: gid %q", group, g.Gid)
	}
	if err := os.Chown(path, 0, gid); err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatalf("mtatest: %v", err)
	}
}
