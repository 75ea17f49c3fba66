package main

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
)

// TestPrometheusRulesCheck runs promtool over contrib/prometheus: the
// example alert rules must load in Prometheus as shipped.
func TestPrometheusRulesCheck(t *testing.T) {
	t.Parallel()
	mtatest.RequireToolsHint(t, "apt-get install prometheus", "promtool")
	files, err := filepath.Glob(filepath.Join("..", "..", "contrib", "prometheus", "*-rules.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule files in contrib/prometheus: %v", err)
	}
	out, err := exec.Command("promtool", append([]string{"check", "rules"}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}
