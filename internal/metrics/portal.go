package metrics

import (
	"io"
	"net/http"
	"strings"
)

// Portal wraps the portal's handler and counts what recipients do from
// the method, path and status of each request, without touching the
// portal's code: the routes and their answers are the portal's contract
// (package portal's doc). Registrations, codes sent and reads are counted
// by PortalStore instead, where they are certain.
//
//	POST /open                 303 -> opens; body bytes -> upload bytes
//	POST /signin               303 ok, 429 throttled, other 4xx failed
//	POST /email                303 to /signin?codes=held -> code requests throttled
//	POST /m/{token}/reply      2xx/3xx -> replies; body bytes -> upload bytes
func (m *Metrics) Portal(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := portalRoute(r.Method, r.URL.Path)
		if route == "" {
			next.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		var body *countingBody
		if route == "open" || route == "reply" {
			body = &countingBody{ReadCloser: r.Body}
			r.Body = body
		}
		next.ServeHTTP(sw, r)
		if body != nil {
			m.uploadBytes.Add(float64(body.n))
		}
		st := sw.status
		switch route {
		case "open":
			if st == http.StatusSeeOther {
				m.opens.Inc()
			}
		case "signin":
			switch {
			case st == http.StatusSeeOther:
				m.signins.WithLabelValues("ok").Inc()
			case st == http.StatusTooManyRequests:
				m.signins.WithLabelValues("throttled").Inc()
			case st >= 400 && st < 500:
				m.signins.WithLabelValues("failed").Inc()
			}
		case "code":
			if st == http.StatusSeeOther && sw.Header().Get("Location") == "/signin?codes=held" {
				m.codeRequests.WithLabelValues("throttled").Inc()
			}
		case "reply":
			if st < 400 {
				m.replies.Inc()
			}
		}
	})
}

func portalRoute(method, path string) string {
	switch {
	case method == http.MethodPost && path == "/open":
		return "open"
	case method == http.MethodPost && path == "/signin":
		return "signin"
	case method == http.MethodPost && path == "/email":
		return "code"
	case strings.HasPrefix(path, "/m/"):
		rest := path[len("/m/"):]
		if method == http.MethodPost && strings.HasSuffix(rest, "/reply") && strings.Count(rest, "/") == 1 {
			return "reply"
		}
	}
	return ""
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}
