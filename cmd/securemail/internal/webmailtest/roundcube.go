package webmailtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
	"github.com/securemail/securemail/internal/syncbuf"
)

// Where Debian's roundcube-core package puts Roundcube.
const (
	RoundcubeCode   = "/usr/share/roundcube" // index.php, program/, skins/, SQL/, plugins/
	RoundcubeConfig = "/etc/roundcube"       // defaults.inc.php, mimetypes.php
)

// RoundcubeOptions configure a private Roundcube.
type RoundcubeOptions struct {
	// IMAPAddr is the 127.0.0.1:port of the IMAP server (no TLS).
	IMAPAddr string
	// SMTPAddr is the 127.0.0.1:port Roundcube submits to, with STARTTLS
	// and SMTP AUTH as the logged-in user ("tls://" in Roundcube's terms).
	SMTPAddr string
	// SMTPCAFile is the PEM certificate Roundcube trusts for STARTTLS, and
	// SMTPPeerName the name it must carry; the connection is verified.
	SMTPCAFile, SMTPPeerName string
	// Plugins maps a plug-in's name to its source folder, linked into the
	// installation's plugins/ and enabled, in addition to Debian's own
	// plug-ins (linked, not enabled).
	Plugins map[string]string
	// PluginOrder is the order of $config['plugins']; default: the keys of
	// Plugins in any order.
	PluginOrder []string
	// ExtraConfig is PHP appended to config.inc.php, e.g.
	// "$config['secure_send_header'] = 'X-Secure-Send';".
	ExtraConfig string
}

// Roundcube is a private Roundcube served by "php -S" behind a small Go
// front server (see serveFront).
type Roundcube struct {
	URL        string // http://127.0.0.1:port/
	Dir        string // the installation (INSTALL_PATH)
	ConfigFile string
	LogDir     string

	cmd  *exec.Cmd
	done chan struct{}
	out  *syncbuf.Buffer
}

// StartRoundcube lays out a private installation under a temporary
// directory, symlinked to Debian's code and with its own config, SQLite
// database (created by Roundcube on first use), logs, temp folder and
// plugins, and serves it with "php -S" through a router that defines
// INSTALL_PATH. It returns when the login page answers.
func StartRoundcube(t testing.TB, opts RoundcubeOptions) *Roundcube {
	t.Helper()
	RequireTools(t)
	php, err := mtatest.LookTool("php")
	if err != nil {
		t.Fatalf("webmailtest: %v", err)
	}
	root := mtatest.MustTempDir(t)
	dir := filepath.Join(root, "roundcube")
	rc := &Roundcube{
		Dir:        dir,
		ConfigFile: filepath.Join(dir, "config", "config.inc.php"),
		LogDir:     filepath.Join(dir, "logs"),
		done:       make(chan struct{}),
		out:        new(syncbuf.Buffer),
	}
	for _, d := range []string{"config", "logs", "temp", "plugins", "db"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatalf("webmailtest: %v", err)
		}
	}
	links := map[string]string{
		"index.php":                      filepath.Join(RoundcubeCode, "index.php"),
		"program":                        filepath.Join(RoundcubeCode, "program"),
		"skins":                          filepath.Join(RoundcubeCode, "skins"),
		"SQL":                            filepath.Join(RoundcubeCode, "SQL"),
		"config/defaults.inc.php":        filepath.Join(RoundcubeConfig, "defaults.inc.php"),
		"config/mimetypes.php":           filepath.Join(RoundcubeConfig, "mimetypes.php"),
		"plugins/jqueryui":               filepath.Join(RoundcubeCode, "plugins", "jqueryui"),
		"plugins/filesystem_attachments": filepath.Join(RoundcubeCode, "plugins", "filesystem_attachments"),
	}
	order := opts.PluginOrder
	for name, src := range opts.Plugins {
		abs, err := filepath.Abs(src)
		if err != nil {
			t.Fatalf("webmailtest: plugin %s: %v", name, err)
		}
		links["plugins/"+name] = abs
		if opts.PluginOrder == nil {
			order = append(order, name)
		}
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatalf("webmailtest: %v", err)
		}
	}

	port := mtatest.FreePort(t)
	var key [12]byte
	rand.Read(key[:])
	quoted := make([]string, len(order))
	for i, p := range order {
		quoted[i] = phpString(p)
	}
	conf := fmt.Sprintf(`<?php
// config.inc.php of a private test installation written by webmailtest
$config = [];
$config['db_dsnw'] = %[1]s;
$config['imap_host'] = %[2]s;
$config['smtp_host'] = %[3]s;
$config['smtp_user'] = '%%u';
$config['smtp_pass'] = '%%p';
$config['smtp_conn_options'] = ['ssl' => [
    'verify_peer' => true,
    'verify_peer_name' => true,
    'peer_name' => %[4]s,
    'cafile' => %[5]s,
]];
$config['des_key'] = %[6]s;
$config['plugins'] = [%[7]s];
$config['skin'] = 'elastic';
$config['log_driver'] = 'file';
$config['log_dir'] = %[8]s;
$config['temp_dir'] = %[9]s;
$config['enable_installer'] = false;
$config['enable_spellcheck'] = false;
$config['support_url'] = '';
$config['product_name'] = 'Webmail';
$config['create_default_folders'] = true;
$config['drafts_mbox'] = 'Drafts';
$config['sent_mbox'] = 'Sent';
$config['trash_mbox'] = 'Trash';
// Tests save drafts themselves, when they mean to.
$config['draft_autosave'] = 0;
$config['compose_save_localstorage'] = false;
$config['language'] = 'en_US';
$config['htmleditor'] = 0;
$config['refresh_interval'] = 0;
$config['keep_alive'] = 600;
%[10]s
`,
		phpString("sqlite:///"+filepath.Join(dir, "db", "roundcube.sqlite")+"?mode=0600"),
		phpString(opts.IMAPAddr),
		phpString("tls://"+opts.SMTPAddr),
		phpString(opts.SMTPPeerName),
		phpString(opts.SMTPCAFile),
		phpString(hex.EncodeToString(key[:])),
		strings.Join(quoted, ", "),
		phpString(rc.LogDir+"/"),
		phpString(filepath.Join(dir, "temp")+"/"),
		opts.ExtraConfig,
	)
	if err := os.WriteFile(rc.ConfigFile, []byte(conf), 0o600); err != nil {
		t.Fatalf("webmailtest: %v", err)
	}

	// The router runs every request that is not a static file under the
	// installation through index.php, with INSTALL_PATH pointing at the
	// private installation (Debian's iniset.php defaults to
	// /var/lib/roundcube). It lies outside the document root.
	router := filepath.Join(root, "router.php")
	routerSrc := fmt.Sprintf(`<?php
define('INSTALL_PATH', %s);
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
if ($path !== '/' && $path !== '/index.php') {
    $file = realpath(INSTALL_PATH . ltrim(rawurldecode($path), '/'));
    if ($file === false || !is_file($file) || preg_match('/\.(php|inc|sql|sh|dist)$/i', $file)) {
        http_response_code(404);
        return true;
    }
    return false;
}
chdir(INSTALL_PATH);
require INSTALL_PATH . 'index.php';
`, phpString(dir+"/"))
	if err := os.WriteFile(router, []byte(routerSrc), 0o644); err != nil {
		t.Fatalf("webmailtest: %v", err)
	}

	rc.cmd = exec.Command(php,
		"-d", "error_log="+filepath.Join(rc.LogDir, "php.log"),
		"-d", "log_errors=1", "-d", "display_errors=0",
		// opcache stays on (Roundcube is slow without it), but a config
		// edit in a test takes effect at the next request.
		"-d", "opcache.revalidate_freq=0",
		"-d", "upload_max_filesize=20M", "-d", "post_max_size=25M",
		"-S", fmt.Sprintf("127.0.0.1:%d", port), "-t", dir, router)
	rc.cmd.Dir = dir
	// One worker (PHP_CLI_SERVER_WORKERS unset): Roundcube answers some
	// requests with a redirect before its session is written, and a second
	// worker could serve the redirected request from the old session
	// ("compose session not found").
	rc.cmd.Env = os.Environ()
	rc.cmd.Stdout, rc.cmd.Stderr = rc.out, rc.out
	rc.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := rc.cmd.Start(); err != nil {
		t.Fatalf("webmailtest: start php -S: %v", err)
	}
	go func() {
		rc.cmd.Wait()
		close(rc.done)
	}()
	rc.URL = serveFront(t, dir, fmt.Sprintf("127.0.0.1:%d", port))
	t.Cleanup(func() {
		rc.stop()
		if t.Failed() {
			t.Logf("webmailtest: php -S output:\n%s", rc.out.String())
			t.Logf("webmailtest: roundcube logs:\n%s", rc.Logs())
		}
	})

	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(rc.URL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return rc
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("webmailtest: roundcube at %s not answering after 15s: %v\n%s\n%s", rc.URL, err, rc.out.String(), rc.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (rc *Roundcube) stop() {
	select {
	case <-rc.done:
		return
	default:
	}
	syscall.Kill(-rc.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-rc.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-rc.cmd.Process.Pid, syscall.SIGKILL)
		<-rc.done
	}
}

// Logs returns the contents of Roundcube's log files (errors.log,
// php.log, ...), for failure messages.
func (rc *Roundcube) Logs() string {
	var b strings.Builder
	entries, _ := os.ReadDir(rc.LogDir)
	for _, e := range entries {
		fmt.Fprintf(&b, "--- %s\n%s\n", e.Name(), readFile(filepath.Join(rc.LogDir, e.Name())))
	}
	return b.String()
}

// phpString quotes s as a single-quoted PHP string literal.
func phpString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// PHPString quotes s as a PHP string literal, for RoundcubeOptions.ExtraConfig.
func PHPString(s string) string { return phpString(s) }

// serveFront starts the HTTP server a test's browser talks to and returns
// its URL: static files of the installation (skins, scripts, fonts) are
// served by Go with Last-Modified and a cache lifetime, so that the
// browser fetches them once; everything else goes to php -S at phpAddr.
// php -S runs one worker (see StartRoundcube), which would otherwise
// serve the two dozen files of every page load one after another.
func serveFront(t testing.TB, dir, phpAddr string) string {
	t.Helper()
	php := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: phpAddr})
	static := regexp.MustCompile(`(?i)\.(css|js|png|gif|jpe?g|svg|ico|woff2?|ttf|eot|map)$`)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("webmailtest: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clean := path.Clean("/" + r.URL.Path)
		if static.MatchString(clean) && !strings.Contains(clean, "/config/") {
			file := filepath.Join(dir, filepath.FromSlash(clean))
			if st, err := os.Stat(file); err == nil && st.Mode().IsRegular() {
				w.Header().Set("Cache-Control", "max-age=3600")
				http.ServeFile(w, r, file)
				return
			}
		}
		php.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}
