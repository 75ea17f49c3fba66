package webmailtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
)

// Install is what to install when something is missing.
const Install = "Debian: apt-get install --no-install-recommends php-cli php-cgi php-sqlite3 roundcube-core roundcube-sqlite3 dovecot-imapd"

// RequireTools skips t (fails it with CI set) unless php, dovecot and
// Debian's Roundcube are installed.
func RequireTools(t testing.TB) {
	t.Helper()
	var missing []string
	for _, tool := range []string{"php", "dovecot"} {
		if _, err := mtatest.LookTool(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	for _, f := range []string{filepath.Join(RoundcubeCode, "index.php"), filepath.Join(RoundcubeConfig, "defaults.inc.php")} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		mtatest.SkipUnlessCI(t, "webmailtest: missing "+strings.Join(missing, ", ")+" ("+Install+")")
	}
}
