// Package metrics is securemail's Prometheus instrumentation: the milter's
// and the portal's counters, the health endpoints, and the HTTP handler
// that serves them on metrics.listen.
//
// # Contract
//
//   - Every label value comes from a fixed set written in this package
//     (verdicts, refusal reasons, sign-in results, reload results). No
//     address, subject, key id or host name is ever a label: the series
//     count does not grow with traffic.
//   - /metrics is the Prometheus text format from a private registry with
//     the Go runtime and process collectors and securemail_build_info.
//   - /healthz answers 200 while the process serves HTTP at all (liveness).
//   - /readyz runs every readiness check (key store writable, master key
//     loaded, milter and portal listening) and answers 200 when all pass,
//     503 with the failing check names otherwise. Details stay in the log.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/securemail/securemail/milter"
)

const namespace = "securemail"

// Metrics holds every securemail metric in one private registry.
type Metrics struct {
	Registry *prometheus.Registry

	messages      map[string]prometheus.Counter // by verdict
	refused       map[string]prometheus.Counter // by reason
	refusedOther  prometheus.Counter
	sealSeconds   prometheus.Histogram
	sealedBytes   prometheus.Counter
	commitSeconds prometheus.Histogram
	sessions      prometheus.Gauge
	reloads       *prometheus.CounterVec

	opens         prometheus.Counter
	uploadBytes   prometheus.Counter
	registrations prometheus.Counter
	signins       *prometheus.CounterVec
	codeRequests  *prometheus.CounterVec
	reads         prometheus.Counter
	replies       prometheus.Counter
}

// New registers every metric. spoolDirs name the folders whose bytes are
// reported as securemail_spool_bytes{spool=key}; they are measured at
// scrape time.
func New(version string, spoolDirs map[string]string) *Metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if version == "" {
		version = buildVersion()
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "build_info",
		Help: "Always 1; the labels name the build.", ConstLabels: prometheus.Labels{"version": version}})
	build.Set(1)
	f(build)

	m := &Metrics{Registry: reg, messages: map[string]prometheus.Counter{}, refused: map[string]prometheus.Counter{}}
	messages := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "milter", Name: "messages_total",
		Help: "Messages decided by the milter, by verdict: sealed, internal (tag stripped), plain (not triggered), inbound (not a submission), refused."},
		[]string{"verdict"})
	for _, v := range []string{milter.VerdictSealed, milter.VerdictInternal, milter.VerdictPlain, milter.VerdictInbound, milter.VerdictRefused} {
		m.messages[v] = messages.WithLabelValues(v)
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "milter", Name: "refused_total",
		Help: "Messages the milter refused, by reason."}, []string{"reason"})
	for _, r := range []string{milter.ReasonTLSRequired, milter.ReasonTooBig, milter.ReasonNotEntitled, milter.ReasonTempFail, milter.ReasonShuttingDown} {
		m.refused[r] = refused.WithLabelValues(r)
	}
	m.refusedOther = refused.WithLabelValues("other")
	m.sealSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Subsystem: "milter", Name: "seal_duration_seconds",
		Help:    "Time from the start of sealing a message to the last byte of its new body, key commit included.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}})
	m.sealedBytes = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: "milter", Name: "sealed_bytes_total",
		Help: "Body bytes of the messages sealed."})
	m.commitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Subsystem: "keystore", Name: "commit_duration_seconds",
		Help:    "Time to commit a message key durably (fsync included), failed commits too.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 15}})
	m.sessions = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "milter", Name: "sessions",
		Help: "Open milter connections from the MTA."})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "config_reloads_total",
		Help: "Configuration reloads, by result: ok, or refused (the old configuration stayed in force)."}, []string{"result"})
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("refused")
	f(messages)
	f(refused)
	f(m.sealSeconds)
	f(m.sealedBytes)
	f(m.commitSeconds)
	f(m.sessions)
	f(m.reloads)

	m.opens = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: "portal", Name: "opens_total",
		Help: "Envelopes posted to /open and accepted."})
	m.uploadBytes = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: "portal", Name: "upload_bytes_total",
		Help: "Request body bytes received by /open and reply."})
	m.registrations = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: "portal", Name: "registrations_total",
		Help: "Accounts created (password set after the emailed code)."})
	m.signins = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "portal", Name: "signins_total",
		Help: "Sign-in attempts by result: ok, failed, throttled."}, []string{"result"})
	m.codeRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "portal", Name: "code_requests_total",
		Help: "One-time codes emailed (registration, reset), by result: sent (a code was stored and mailed), throttled (refused: too many requests)."},
		[]string{"result"})
	m.reads = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: "portal", Name: "reads_total",
		Help: "Messages read: reads recorded in the audit trail."})
	m.replies = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: "portal", Name: "replies_total",
		Help: "Replies submitted from the portal."})
	for _, r := range []string{"ok", "failed", "throttled"} {
		m.signins.WithLabelValues(r)
	}
	m.codeRequests.WithLabelValues("sent")
	m.codeRequests.WithLabelValues("throttled")
	for _, c := range []prometheus.Collector{m.opens, m.uploadBytes, m.registrations, m.signins, m.codeRequests, m.reads, m.replies} {
		f(c)
	}
	for name, dir := range spoolDirs {
		f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "spool_bytes",
			Help: "Bytes in use in a spool folder (milter: envelopes being sealed; portal: envelopes opened and waiting).", ConstLabels: prometheus.Labels{"spool": name}},
			func() float64 { return float64(dirBytes(dir)) }))
	}
	return m
}

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

// dirBytes sums the sizes of the regular files in dir (not below it).
func dirBytes(dir string) int64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if info, err := e.Info(); err == nil {
			n += info.Size()
		}
	}
	return n
}

// Milter returns the milter's Events.
func (m *Metrics) Milter() milter.Events { return milterEvents{m} }

type milterEvents struct{ m *Metrics }

func (e milterEvents) MessageDone(verdict, reason string) {
	if c, ok := e.m.messages[verdict]; ok {
		c.Inc()
	}
	if verdict != milter.VerdictRefused {
		return
	}
	if c, ok := e.m.refused[reason]; ok {
		c.Inc()
	} else {
		e.m.refusedOther.Inc()
	}
}

func (e milterEvents) Sealed(took time.Duration, bodyBytes int64) {
	e.m.sealSeconds.Observe(took.Seconds())
	e.m.sealedBytes.Add(float64(bodyBytes))
}

func (e milterEvents) KeyCommitted(took time.Duration) { e.m.commitSeconds.Observe(took.Seconds()) }
func (e milterEvents) SessionOpened()                  { e.m.sessions.Inc() }
func (e milterEvents) SessionClosed()                  { e.m.sessions.Dec() }

// Reloaded counts a configuration reload.
func (m *Metrics) Reloaded(ok bool) {
	if ok {
		m.reloads.WithLabelValues("ok").Inc()
	} else {
		m.reloads.WithLabelValues("refused").Inc()
	}
}

// Check is one readiness check; it returns nil when ready.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Handler serves /metrics, /healthz and /readyz.
func (m *Metrics) Handler(checks []Check, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	var logMu sync.Mutex
	lastFailed := map[string]bool{}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		var failed []string
		for _, c := range checks {
			err := c.Fn(ctx)
			logMu.Lock()
			if err != nil && !lastFailed[c.Name] {
				log.Warn("not ready", "check", c.Name, "err", err)
			}
			lastFailed[c.Name] = err != nil
			logMu.Unlock()
			if err != nil {
				failed = append(failed, c.Name)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %s\n", strings.Join(failed, ", "))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// WritableDir is a readiness check that creates and removes a file in dir.
func WritableDir(dir string) func(context.Context) error {
	return func(context.Context) error {
		f, err := os.CreateTemp(dir, ".readyz-*")
		if err != nil {
			return err
		}
		name := f.Name()
		err = errors.Join(f.Close(), os.Remove(name))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
}
