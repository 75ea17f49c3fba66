package keystore_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestRootPackageImportsNoBackend keeps the root package backend-neutral:
// types, interfaces and the master key only, so that importing it (as the
// milter and the portal do) pulls in neither bbolt nor pgx.
func TestRootPackageImportsNoBackend(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the go command is needed to list the package's imports: %v", err)
		}
		t.Skipf("skipping: the go command is needed to list the package's imports: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}}", "github.com/securemail/securemail/keystore").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 2 {
		t.Fatalf("go list -deps listed %q; expected the package and the standard library", deps)
	}
	for _, dep := range deps {
		for _, banned := range []string{
			"go.etcd.io/bbolt",
			"github.com/jackc/pgx",
			"github.com/securemail/securemail/keystore/",
		} {
			if dep == banned || strings.HasPrefix(dep, strings.TrimSuffix(banned, "/")+"/") {
				t.Errorf("keystore imports %s (a backend); backends belong in keystore/boltstore, keystore/pgstore, keystore/memstore", dep)
			}
		}
	}
}
