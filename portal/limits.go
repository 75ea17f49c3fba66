package portal

import (
	"context"
	"errors"
	"fmt"
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
}

// DefaultLimits are the budgets used unless configured otherwise.
var DefaultLimits = Limits{
	SignInPerAddress:  Rate{5, 15 * time.Minute},
	SignInPerClient:   Rate{20, 15 * time.Minute},
	AnswersPerReset:   Rate{3, time.Hour},
	CodesPerAddress:   Rate{5, time.Hour},
	CodesPerClient:    Rate{20, time.Hour},
	RepliesPerAccount: Rate{20, time.Hour},
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
	return l
}

// hit spends one attempt of rate under key.
func (h *handler) hit(ctx context.Context, key string, rate Rate) (keystore.HitResult, error) {
	return h.opts.Store.Hit(ctx, key, h.now(), rate.Per, rate.N)
}

// busy answers a request that found the password checks or the mail queue
// full: at once, in words, instead of after a long wait.
func (h *handler) busy(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "60")
	h.errorPage(w, r, http.StatusServiceUnavailable, "This server is busy",
		"Too many people are signing in right now. Nothing was lost. Please try again in a minute.")
}

// hashFailed answers a request whose argon2 work could not run.
func (h *handler) hashFailed(w http.ResponseWriter, r *http.Request, op string, err error) {
	if errors.Is(err, ErrBusy) {
		h.log.Warn("portal: password checks busy", "op", op, "remote", h.clientIP(r))
		h.busy(w, r)
		return
	}
	h.storeFailed(w, r, op, err)
}

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
