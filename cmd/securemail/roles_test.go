package main

// Roles (milter.enabled, portal.enabled): a submission host that runs only
// the milter opens no web port, a portal host that runs only the portal
// opens no milter socket, and a host that would run nothing is refused.

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
)

func TestRolesConfig(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Milter.Enabled || !cfg.Portal.Enabled {
		t.Fatalf("default roles: milter %v portal %v, want both on", cfg.Milter.Enabled, cfg.Portal.Enabled)
	}
	if _, err := loadConfig(writeConfig(t, "milter:\n  enabled: false\nportal:\n  enabled: false\n")); err == nil ||
		!strings.Contains(err.Error(), "this host would run nothing") {
		t.Fatalf("both roles off: %v", err)
	}
	if _, err := loadConfig(writeConfig(t, "portal:\n  enabled: maybe\n")); err == nil || !strings.Contains(err.Error(), "portal.enabled") {
		t.Fatalf("portal.enabled: maybe: %v", err)
	}
	for _, tc := range []struct{ yaml, want, notWant string }{
		{"data_dir: DIR\nportal:\n  enabled: false\n", "runs only the milter", "milter socket and MTA checks were skipped"},
		{"data_dir: DIR\nmilter:\n  enabled: false\n", "runs only the portal", ""},
		{"data_dir: DIR\n", "runs the milter and the portal", "milter socket and MTA checks were skipped"},
	} {
		yaml := strings.ReplaceAll(tc.yaml, "DIR", t.TempDir())
		rep := runCheckConfig(checkConfigOptions{config: writeConfig(t, yaml), postfixDir: "none", sendmailCF: "none"})
		var out bytes.Buffer
		rep.write(&out)
		if !strings.Contains(out.String(), "info: roles: this host "+tc.want) {
			t.Errorf("check-config of %q does not say %q:\n%s", tc.yaml, tc.want, out.String())
		}
		if tc.notWant != "" && strings.Contains(out.String(), tc.notWant) {
			t.Errorf("check-config of %q says %q:\n%s", tc.yaml, tc.notWant, out.String())
		}
		if tc.notWant == "" && !strings.Contains(out.String(), "milter socket and MTA checks were skipped") {
			t.Errorf("check-config of a portal-only host still checks the MTA:\n%s", out.String())
		}
	}
}

// TestServeRoles runs the binary as a milter-only and as a portal-only
// host and checks which ports each one opens.
func TestServeRoles(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs the securemail binary built (go build)")
	}
	bin := e2eBuild(t)
	for _, role := range []string{"milter", "portal"} {
		t.Run(role+"-only", func(t *testing.T) {
			milterAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
			portalAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
			config := e2eWriteConfigWith(t, milterAddr, "127.0.0.1:1", e2eConfig{
				logLevel: "info", networks: "[]", maxSize: "1MiB", portalListen: portalAddr,
			})
			up, down, off := milterAddr, portalAddr, "SECUREMAIL_PORTAL_ENABLED=false"
			if role == "portal" {
				up, down, off = portalAddr, milterAddr, "SECUREMAIL_MILTER_ENABLED=false"
			}
			srv := e2eStartServeAs(t, bin, config, "tcp", up, nil, off)
			if c, err := net.DialTimeout("tcp", down, time.Second); err == nil {
				c.Close()
				t.Fatalf("a %s-only host accepts connections on %s", role, down)
			}
			if role == "portal" {
				resp, err := http.Get("http://" + portalAddr + "/")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("portal-only host: GET / = %d", resp.StatusCode)
				}
			}
			if code, err := srv.stop(30 * time.Second); code != 0 || err != nil {
				t.Fatalf("serve (%s only) exited %d, %v\n%s", role, code, err, srv.log.String())
			}
			if want := `roles=` + role; !strings.Contains(srv.log.String(), want) {
				t.Fatalf("serve's start line does not say %s:\n%s", want, srv.log.String())
			}
		})
	}
}
