package portal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/securemail/securemail/keystore"
)

// Rate is a budget: at most N attempts per window of length Per.
type Rate struct {
	N   int
	Per time.Duration
}

// Limits are the portal's abuse budgets. Each is one keystore Hit, checked
// and counted in one atomic step before the work it guards (an argon2
// check, a mail), so it holds for a burst of requests released together
// and across several hosts sharing one store. Zero fields take the value
// of DefaultLimits. docs/security.md lists them with their config keys.
type Limits struct {
	// SignInPerAddress: password tries at one address, from anywhere. A
	// right password starts the count afresh.
	SignInPerAddress Rate
	// SignInPerClient: password tries from one client address, at any
	// address. A right password does not refund it, so an attacker
	// cannot reset it by signing in to an account of their own.
	SignInPerClient Rate
	// AnswersPerReset: sets of security answers checked per reset; when
	// they are spent the reset ends. A new code starts the count afresh.
	AnswersPerReset Rate
	// CodesPerAddress: codes mailed to one address for one purpose.
	CodesPerAddress Rate
	// CodesPerClient: code requests from one client address.
	CodesPerClient Rate
	// RepliesPerAccount: replies sent by one account.
	RepliesPerAccount Rate
	// UploadsPerClient: envelopes posted to /open from one client
	// address.
	UploadsPerClient Rate
}

// DefaultLimits are the budgets used unless configured otherwise.
var DefaultLimits = Limits{
	SignInPerAddress:  Rate{5, 15 * time.Minute},
	SignInPerClient:   Rate{20, 15 * time.Minute},
	AnswersPerReset:   Rate{3, time.Hour},
	CodesPerAddress:   Rate{5, time.Hour},
	CodesPerClient:    Rate{20, time.Hour},
	RepliesPerAccount: Rate{20, time.Hour},
	UploadsPerClient:  Rate{60, time.Hour},
}

func (l Limits) withDefaults() Limits {
	fill := func(r *Rate, d Rate) {
		if r.N <= 0 {
			r.N = d.N
		}
		if r.Per <= 0 {
			r.Per = d.Per
		}
	}
	fill(&l.SignInPerAddress, DefaultLimits.SignInPerAddress)
	fill(&l.SignInPerClient, DefaultLimits.SignInPerClient)
	fill(&l.AnswersPerReset, DefaultLimits.AnswersPerReset)
	fill(&l.CodesPerAddress, DefaultLimits.CodesPerAddress)
	fill(&l.CodesPerClient, DefaultLimits.CodesPerClient)
	fill(&l.RepliesPerAccount, DefaultLimits.RepliesPerAccount)
	fill(&l.UploadsPerClient, DefaultLimits.UploadsPerClient)
	return l
}

// hit spends one attempt of rate under key.
func (h *handler) hit(ctx context.Context, key string, rate Rate) (keystore.HitResult, error) {
	return h.opts.Store.Hit(ctx, key, h.now(), rate.Per, rate.N)
}

// checkSlot admits one password or answer check from ip, or refuses it
// when the hasher's queue is full or that client already has one in
// progress on this host: one client
// cannot fill the argon2 slots and their queue, so a burst from one place
// delays everyone else by one check at most. Refused checks are not
// counted against any budget.
func (h *handler) checkSlot(ip string) (release func(), ok bool) {
	if h.opts.Hasher.Busy() {
		return nil, false
	}
	h.checkMu.Lock()
	defer h.checkMu.Unlock()
	if h.checking[ip] >= checksPerClient {
		return nil, false
	}
	h.checking[ip]++
	return func() {
		h.checkMu.Lock()
		if h.checking[ip]--; h.checking[ip] <= 0 {
			delete(h.checking, ip)
		}
		h.checkMu.Unlock()
	}, true
}

// checksPerClient is how many password or answer checks one client may
// have in progress at once.
const checksPerClient = 1

// errCheckRefused is the cause of the busy page when checkSlot refuses.
var errCheckRefused = errors.New("portal: password check refused: checks full or one in progress from this client")

// errMailQueueFull is returned by mailQueue.add when the queue is full.
var errMailQueueFull = errors.New("portal: mail queue full")

// mailQueue runs the slow part of a code request (store writes and the
// mail) after the answer has gone out, so that the answer takes the same
// time whether or not the address has an account. Jobs run one at a time
// in the order queued; a job that fails is logged.
type mailQueue struct {
	jobs    chan func(context.Context)
	pending sync.WaitGroup
	stop    context.CancelFunc
	done    chan struct{}
}

func newMailQueue(size int) *mailQueue {
	ctx, cancel := context.WithCancel(context.Background())
	q := &mailQueue{jobs: make(chan func(context.Context), size), stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(q.done)
		for {
			select {
			case <-ctx.Done():
				// Finish what was promised before stopping.
				for {
					select {
					case job := <-q.jobs:
						q.run(context.Background(), job)
					default:
						return
					}
				}
			case job := <-q.jobs:
				q.run(ctx, job)
			}
		}
	}()
	return q
}

func (q *mailQueue) run(ctx context.Context, job func(context.Context)) {
	defer q.pending.Done()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	job(ctx)
}

// add queues job, or fails with errMailQueueFull without waiting.
func (q *mailQueue) add(job func(context.Context)) error {
	q.pending.Add(1)
	select {
	case q.jobs <- job:
		return nil
	default:
		q.pending.Done()
		return errMailQueueFull
	}
}

// wait returns when every job queued so far has run.
func (q *mailQueue) wait() { q.pending.Wait() }

// close runs the jobs still queued and stops the worker.
func (q *mailQueue) close() {
	q.stop()
	<-q.done
}

func (r Rate) String() string { return fmt.Sprintf("%d per %v", r.N, r.Per) }

// UploadGuard bounds how long and how many uploads (/open and the reply
// form) a client can keep open.
type UploadGuard struct {
	// PerClient is how many uploads one client address may have in
	// progress at once.
	PerClient int
	// Grace is how long an upload may go before MinRate applies, and the
	// longest it may send nothing at all.
	Grace time.Duration
	// MinRate is the least average rate, in bytes per second, after
	// Grace: a client trickling bytes is cut off.
	MinRate int64
	// Deadline bounds a whole upload, whatever its rate.
	Deadline time.Duration
}

// DefaultUploadGuard: 4 at once per client; after 30 s at least 4 KiB/s on
// average (a 28 MB upload of the largest envelope needs an uplink of 32
// kbit/s); nothing sent for 30 s ends it; no upload lasts 30 minutes.
var DefaultUploadGuard = UploadGuard{PerClient: 4, Grace: 30 * time.Second, MinRate: 4 << 10, Deadline: 30 * time.Minute}

func (g UploadGuard) withDefaults() UploadGuard {
	if g.PerClient <= 0 {
		g.PerClient = DefaultUploadGuard.PerClient
	}
	if g.Grace <= 0 {
		g.Grace = DefaultUploadGuard.Grace
	}
	if g.MinRate <= 0 {
		g.MinRate = DefaultUploadGuard.MinRate
	}
	if g.Deadline <= 0 {
		g.Deadline = DefaultUploadGuard.Deadline
	}
	return g
}

// errTooSlow ends an upload that fell below UploadGuard.MinRate.
var errTooSlow = errors.New("portal: upload too slow")

// guardUpload admits an upload from r's client, or answers 429 itself and
// returns false. Admitted, r.Body is cut off when it falls below the
// minimum rate, sends nothing for Grace, or outlasts Deadline; done must
// be called when the upload ends.
func (h *handler) guardUpload(w http.ResponseWriter, r *http.Request) (done func(), ok bool) {
	ip := h.clientIP(r)
	g := h.opts.Uploads
	h.uploadMu.Lock()
	if h.uploading[ip] >= g.PerClient {
		h.uploadMu.Unlock()
		h.fail(w, r, pageTooManyUploads())
		return nil, false
	}
	h.uploading[ip]++
	h.uploadMu.Unlock()
	rc := http.NewResponseController(w)
	start := time.Now() // the real clock: this is about the network
	deadline := start.Add(g.Deadline)
	_ = rc.SetReadDeadline(earlier(start.Add(g.Grace), deadline))
	r.Body = &rateReader{ReadCloser: r.Body, guard: g, start: start, deadline: deadline, rc: rc}
	return func() {
		// The deadline belonged to this upload, not to the next request
		// on the same connection.
		_ = rc.SetReadDeadline(time.Time{})
		h.uploadMu.Lock()
		if h.uploading[ip]--; h.uploading[ip] <= 0 {
			delete(h.uploading, ip)
		}
		h.uploadMu.Unlock()
	}, true
}

// rateReader enforces an UploadGuard on a request body.
type rateReader struct {
	io.ReadCloser
	guard    UploadGuard
	start    time.Time
	deadline time.Time
	rc       *http.ResponseController
	n        int64
}

func (r *rateReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n += int64(n)
	now := time.Now()
	if el := now.Sub(r.start); el > r.guard.Grace && float64(r.n) < float64(r.guard.MinRate)*el.Seconds() {
		return n, errTooSlow
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return n, errTooSlow
		}
		return n, err
	}
	// The next read may wait at most Grace, and never past the deadline.
	_ = r.rc.SetReadDeadline(earlier(now.Add(r.guard.Grace), r.deadline))
	return n, nil
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
