package main

// The admin control socket. serve listens on a unix socket (admin.socket,
// default data_dir/admin.sock, mode 0600) and every admin command talks to
// the running service through it; when nothing listens there, the command
// opens the store itself and runs the same operation in-process. Either
// way the operation writes the command's output itself, so the output is
// the same.
//
// Protocol, one operation per connection:
//
//	client: one JSON line {"op": "keys.list", "args": {...}}
//	client: the input body, as frames (see below), ended by an empty frame
//	server: the output body, as frames, ended by an empty frame
//	server: one JSON line {"error": "...", "result": {...}}
//
// A frame is a 4-byte big-endian length and that many bytes. The peer's
// uid (SO_PEERCRED) is checked, root and the service's own user only, and
// logged with every action.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
	"github.com/securemail/securemail/milter"
)

const (
	maxAdminRequest = 1 << 20
	maxFrame        = 64 << 10
)

type adminRequest struct {
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

type adminTrailer struct {
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// adminEnv is what an operation works on: the running service's parts, or
// the ones a command opened itself.
type adminEnv struct {
	cfg    *Config
	store  keystore.Store
	mk     *keystore.MasterKey
	filter *milter.Filter // nil for read-only operations run in-process
	log    *slog.Logger
	who    string // "uid 0" on the socket, "local uid N" in-process
	live   bool   // inside the running service
	// rotateMu serialises master-key rotations within one process.
	rotateMu *sync.Mutex
	// reload is serve's configuration reloader; nil outside serve.
	reload *reloader
}

// adminOp runs one operation: it reads args and the input body, writes
// the command's output to out and returns a result for the client.
type adminOp struct {
	run func(ctx context.Context, env *adminEnv, args json.RawMessage, in io.Reader, out io.Writer) (any, error)
	// writable: run in-process it needs the store open for writing (and
	// the master key and a milter for seal).
	writable bool
	// offlineOnly operations refuse to run inside serve.
	offlineOnly bool
}

var adminOps = map[string]adminOp{}

func registerAdminOp(name string, op adminOp) { adminOps[name] = op }

func adminSocketPath(cfg *Config) string {
	if cfg.Admin.Socket != "" {
		return cfg.Admin.Socket
	}
	return filepath.Join(cfg.DataDir, "admin.sock")
}

// adminServer serves the control socket inside serve.
type adminServer struct {
	env  adminEnv
	ln   net.Listener
	wg   sync.WaitGroup
	stop context.CancelFunc
	ctx  context.Context
}

// listenAdmin opens the control socket, replacing one a previous run left.
func listenAdmin(path string) (net.Listener, error) {
	if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("admin.socket: remove stale socket: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("admin.socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin.socket: %w", err)
	}
	// The uid check below is the gate; the mode keeps others from even
	// connecting.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin.socket: %w", err)
	}
	return ln, nil
}

func startAdminServer(ln net.Listener, env adminEnv) *adminServer {
	ctx, cancel := context.WithCancel(context.Background())
	s := &adminServer{env: env, ln: ln, stop: cancel, ctx: ctx}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					env.log.Error("admin socket: accept failed", "err", err)
				}
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.handle(conn.(*net.UnixConn))
			}()
		}
	}()
	return s
}

// Close stops accepting, cancels operations in progress (a rotation stops
// after its current batch) and waits for them.
func (s *adminServer) Close() {
	s.ln.Close()
	s.stop()
	s.wg.Wait()
}

func peerUID(conn *net.UnixConn) (int, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *syscall.Ucred
	var credErr error
	err = raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if err == nil {
		err = credErr
	}
	if err != nil {
		return -1, err
	}
	return int(cred.Uid), nil
}

func (s *adminServer) handle(conn *net.UnixConn) {
	defer conn.Close()
	log := s.env.log
	uid, err := peerUID(conn)
	if err != nil {
		log.Warn("admin socket: peer credentials unavailable, connection refused", "err", err)
		return
	}
	bw := bufio.NewWriter(conn)
	fw := &frameWriter{w: bw}
	finish := func(result any, opErr error) {
		if err := fw.end(); err != nil {
			return
		}
		t := adminTrailer{}
		if opErr != nil {
			t.Error = opErr.Error()
		} else if result != nil {
			t.Result, _ = json.Marshal(result)
		}
		line, _ := json.Marshal(t)
		bw.Write(append(line, '\n'))
		bw.Flush()
	}
	if uid != 0 && uid != os.Geteuid() {
		log.Warn("admin socket: refused a user that is neither root nor the service user", "peer_uid", uid)
		finish(nil, fmt.Errorf("uid %d may not use the admin socket; run the command as root or as the user serve runs as", uid))
		return
	}
	br := bufio.NewReader(conn)
	line, err := readLimitedLine(br, maxAdminRequest)
	if err != nil {
		finish(nil, fmt.Errorf("bad request: %w", err))
		return
	}
	var req adminRequest
	if err := json.Unmarshal(line, &req); err != nil {
		finish(nil, fmt.Errorf("bad request: %w", err))
		return
	}
	op, ok := adminOps[req.Op]
	if !ok {
		finish(nil, fmt.Errorf("unknown operation %q (is serve older than this command?)", req.Op))
		return
	}
	if op.offlineOnly {
		finish(nil, fmt.Errorf("%s refuses to run while securemail serve runs: stop the service first", req.Op))
		return
	}
	env := s.env
	env.who = "uid " + strconv.Itoa(uid)
	log.Info("admin: command", "who", env.who, "op", req.Op)
	in := &frameReader{r: br}
	result, opErr := op.run(s.ctx, &env, req.Args, in, fw)
	if opErr == nil {
		// Drain any input the operation did not need, so the client
		// is not stuck writing.
		_, opErr = io.Copy(io.Discard, in)
	}
	finish(result, opErr)
}

func readLimitedLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			return nil, err
		}
		line = append(line, chunk...)
		if len(line) > limit {
			return nil, errors.New("request line too long")
		}
		if !isPrefix {
			return line, nil
		}
	}
}

// frameWriter writes the body as frames of at most maxFrame bytes.
type frameWriter struct {
	w     io.Writer
	err   error
	ended bool
}

func (f *frameWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 && f.err == nil {
		chunk := p[:min(len(p), maxFrame)]
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(chunk)))
		if _, f.err = f.w.Write(hdr[:]); f.err != nil {
			break
		}
		if _, f.err = f.w.Write(chunk); f.err != nil {
			break
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, f.err
}

// end writes the empty frame; later writes fail.
func (f *frameWriter) end() error {
	if f.err != nil || f.ended {
		return f.err
	}
	f.ended = true
	_, err := f.w.Write([]byte{0, 0, 0, 0})
	f.err = errors.New("admin socket: write after the end of the body")
	return err
}

// frameReader reads frames until the empty one, then reports io.EOF.
type frameReader struct {
	r    io.Reader
	left uint32
	done bool
}

func (f *frameReader) Read(p []byte) (int, error) {
	for f.left == 0 {
		if f.done {
			return 0, io.EOF
		}
		var hdr [4]byte
		if _, err := io.ReadFull(f.r, hdr[:]); err != nil {
			return 0, fmt.Errorf("admin socket: the connection ended early (did the service stop?): %w", err)
		}
		f.left = binary.BigEndian.Uint32(hdr[:])
		if f.left > maxFrame {
			return 0, errors.New("admin socket: frame too large")
		}
		if f.left == 0 {
			f.done = true
		}
	}
	if uint32(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= uint32(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// errServeDown means no service answers on the control socket.
var errServeDown = errors.New("securemail serve is not running")

// callAdminSocket runs op in the running service. It returns errServeDown
// when nothing listens on the socket, so the caller can run it in-process.
func callAdminSocket(ctx context.Context, path, op string, args any, in io.Reader, out io.Writer, result any) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return errServeDown
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("cannot reach the admin socket %s: permission denied; run this command as root or as the user securemail serve runs as (e.g. sudo -u securemail securemail ...)", path)
	case err != nil:
		return fmt.Errorf("admin socket %s: %w", path, err)
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	rawArgs, err := json.Marshal(args)
	if err != nil {
		return err
	}
	line, err := json.Marshal(adminRequest{Op: op, Args: rawArgs})
	if err != nil {
		return err
	}
	// Send the request and the input while reading the output, so a
	// large input and a large output cannot deadlock.
	sendErr := make(chan error, 1)
	go func() {
		bw := bufio.NewWriter(conn)
		fw := &frameWriter{w: bw}
		_, err := bw.Write(append(line, '\n'))
		if err == nil && in != nil {
			_, err = io.Copy(fw, in)
		}
		if err == nil {
			err = fw.end()
		}
		if err == nil {
			err = bw.Flush()
		}
		sendErr <- err
	}()
	br := bufio.NewReader(conn)
	fr := &frameReader{r: br}
	if _, err := io.Copy(out, fr); err != nil {
		return err
	}
	tline, err := readLimitedLine(br, 64<<20)
	if err != nil {
		return fmt.Errorf("admin socket: the service closed the connection without an answer: %w", err)
	}
	var t adminTrailer
	if err := json.Unmarshal(tline, &t); err != nil {
		return fmt.Errorf("admin socket: bad answer: %w", err)
	}
	if t.Error != "" {
		return errors.New(t.Error)
	}
	// The service may answer before reading all the input it did not
	// need; a write error after that is not a failure.
	select {
	case <-sendErr:
	case <-time.After(time.Second):
	}
	if result != nil && len(t.Result) > 0 {
		return json.Unmarshal(t.Result, result)
	}
	return nil
}

// runAdmin runs op through the running service, or in-process on the
// store when serve is not running. out receives the command's output.
func runAdmin(ctx context.Context, cfg *Config, op string, args any, in io.Reader, out io.Writer, result any) error {
	def, ok := adminOps[op]
	if !ok {
		return fmt.Errorf("unknown operation %q", op)
	}
	path := adminSocketPath(cfg)
	if !def.offlineOnly {
		err := callAdminSocket(ctx, path, op, args, in, out, result)
		if !errors.Is(err, errServeDown) {
			return err
		}
	} else if err := serveRunning(ctx, path); err != nil {
		return err
	}
	return runAdminLocal(ctx, cfg, op, def, args, in, out, result)
}

// serveRunning returns an error if a service answers on the socket.
func serveRunning(ctx context.Context, path string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err == nil {
		conn.Close()
		return fmt.Errorf("securemail serve is running (its admin socket %s answers): stop the service first", path)
	}
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("cannot reach the admin socket %s: permission denied; run this command as root or as the user securemail serve runs as", path)
	}
	return nil
}

func runAdminLocal(ctx context.Context, cfg *Config, op string, def adminOp, args any, in io.Reader, out io.Writer, result any) error {
	log := newLogger(cfg)
	if cfg.Keystore.Backend != backendPostgres {
		if _, err := os.Stat(keystorePath(cfg)); err != nil {
			return fmt.Errorf("no key database at %s (%v): check --config and data_dir; securemail serve creates it on its first start", keystorePath(cfg), errors.Unwrap(err))
		}
	}
	mk, err := loadMasterKeyRing(cfg, log)
	if errors.Is(err, fs.ErrNotExist) && cfg.Keystore.Backend == backendPostgres {
		// Never created here: a key of this host's own would seal what
		// no other host opens.
		return fmt.Errorf("no master key file at %s: copy it from another securemail host (all hosts share one), or start securemail serve once if this is the first host on an empty database; admin commands never create one", cfg.Keystore.MasterKeyFile)
	}
	if err != nil {
		return err
	}
	if def.writable {
		// The milter spools large messages there while sealing them. On
		// PostgreSQL nothing else needs the data folder, so on a host
		// where serve never ran it may not exist yet.
		if err := os.MkdirAll(spoolPath(cfg), 0o700); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
	}
	store, err := openStore(cfg, def.writable)
	if errors.Is(err, boltstore.ErrLocked) {
		return fmt.Errorf("the key database %s is in use, but nothing answers on the admin socket %s: is serve running with another admin.socket or data_dir? (or another admin command is running)", keystorePath(cfg), adminSocketPath(cfg))
	}
	if err != nil {
		return err
	}
	env := adminEnv{cfg: cfg, store: store, mk: mk, log: log, who: "local uid " + strconv.Itoa(os.Getuid()), rotateMu: &sync.Mutex{}}
	if def.writable {
		if env.filter, err = newFilter(cfg, store, mk, log); err != nil {
			store.Close()
			return err
		}
	}
	rawArgs, err := json.Marshal(args)
	if err != nil {
		store.Close()
		return err
	}
	if in == nil {
		in = eofReader{}
	}
	res, opErr := def.run(ctx, &env, rawArgs, in, out)
	if cerr := store.Close(); opErr == nil {
		opErr = cerr
	}
	if opErr != nil {
		return opErr
	}
	if result != nil && res != nil {
		// The same JSON round trip as over the socket.
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		return json.Unmarshal(b, result)
	}
	return nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// decodeArgs reads an operation's arguments.
func decodeArgs(raw json.RawMessage, v any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("bad arguments: %w", err)
	}
	return nil
}
