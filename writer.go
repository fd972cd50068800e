package sse

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Errors a [Writer] returns. Once a write failed, the Writer returns the
// same error for every later call: the stream is over.
var (
	// ErrClientGone reports that the request's context ended, normally
	// because the client disconnected. The context's cause is wrapped too.
	ErrClientGone = errors.New("sse: client went away")
	// ErrNoFlusher reports a response writer that cannot flush, so events
	// would sit in a buffer instead of reaching the client.
	ErrNoFlusher = errors.New("sse: response writer cannot flush")
	// ErrWriteTimeout reports a write that did not finish within the write
	// timeout ([WithWriteTimeout]): the client stopped reading.
	ErrWriteTimeout = errors.New("sse: write timed out")
	// ErrWriteFailed reports any other failed write or flush; the error
	// from the connection is wrapped too.
	ErrWriteFailed = errors.New("sse: write failed")
)

// ContentType is the Content-Type of an event stream.
const ContentType = "text/event-stream; charset=utf-8"

// Writer writes events to one client. Every Send and Comment is flushed at
// once. A Writer is safe for concurrent use.
//
// Get the Writer of a gin request with [WriterFrom]; use [NewWriter] in a
// plain net/http handler.
type Writer struct {
	mu        sync.Mutex
	w         http.ResponseWriter
	inner     http.ResponseWriter // the innermost writer: deadlines, flush errors behind wrappers
	ctx       context.Context
	cfg       *streamConfig // shared by the streams of a route; read only
	deadline  time.Duration // the connection's write deadline on HTTP/1, as a monotonic offset from clockBase
	buf       []byte
	err       error
	http1     bool
	started   bool
	deadlines bool
	wrapped   bool // inner is not w

	timedOut  atomic.Bool // an HTTP/2 write outlived the write timeout (see writeWatch)
	events    atomic.Int64
	bytes     atomic.Int64
	lastWrite atomic.Int64 // when the last write began, as a monotonic offset from clockBase
}

// NewWriter returns a Writer for a plain net/http handler. r may be nil (in
// tests); then the stream never sees the client leave. Headers are set and
// sent with the first write or [Writer.Flush], after the "retry:" field of
// [WithRetry] if given.
func NewWriter(w http.ResponseWriter, r *http.Request, opts ...WriterOption) *Writer {
	cfg := defaultStreamConfig()
	applyStreamOpts(&cfg, opts)
	return newWriter(w, r, &cfg)
}

func newWriter(w http.ResponseWriter, r *http.Request, cfg *streamConfig) *Writer {
	sw := &Writer{
		w:         w,
		ctx:       context.Background(),
		http1:     true,
		cfg:       cfg,
		deadlines: cfg.writeTimeout > 0,
	}
	if r != nil {
		sw.ctx = r.Context()
		sw.http1 = r.ProtoMajor < 2
	}
	sw.inner = innermost(w)
	sw.wrapped = sw.inner != w
	return sw
}

// innermost follows the chain of wrappers down to the writer that owns the
// connection. A wrapper is followed through its Unwrap method or, when it
// has none, through an embedded http.ResponseWriter field (as middlewares
// such as gin-contrib/gzip wrap gin's writer), so that write deadlines and
// flush errors reach the connection behind them.
func innermost(w http.ResponseWriter) http.ResponseWriter {
	for range 32 { // a bound against cycles
		next := unwrap(w)
		if next == nil {
			return w
		}
		w = next
	}
	return w
}

var responseWriterType = reflect.TypeFor[http.ResponseWriter]()

// unwrap returns the writer w wraps, or nil.
func unwrap(w http.ResponseWriter) http.ResponseWriter {
	if u, ok := w.(interface{ Unwrap() http.ResponseWriter }); ok {
		return u.Unwrap()
	}
	v := reflect.ValueOf(w)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	v = v.Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if !f.Anonymous || !f.IsExported() || f.Type.Kind() != reflect.Interface || !f.Type.Implements(responseWriterType) {
			continue
		}
		if inner, ok := v.Field(i).Interface().(http.ResponseWriter); ok && inner != nil {
			return inner
		}
	}
	return nil
}

// canFlush reports whether the writer that owns the connection can flush.
// Wrappers such as gin's claim to flush whatever lies beneath them, so only
// the innermost writer tells the truth.
func canFlush(w http.ResponseWriter) bool {
	switch innermost(w).(type) {
	case http.Flusher, interface{ FlushError() error }:
		return true
	}
	return false
}

// The values of the event stream headers. Every stream's header holds
// these slices instead of allocating its own: nothing writes into a
// header's value slice (Set and Del replace it, Add appends to it, and its
// capacity is its length, so that append copies), and net/http copies the
// header when it sends it.
var (
	contentTypeValues  = []string{ContentType}
	cacheControlValues = []string{"no-cache, no-transform"}
	noValues           = []string{"no"}
	keepAliveValues    = []string{"keep-alive"}
)

// setHeaders sets the event stream headers on h.
func setHeaders(h http.Header, http1 bool) {
	h["Content-Type"] = contentTypeValues[:1:1]
	h["Cache-Control"] = cacheControlValues[:1:1]
	h["X-Accel-Buffering"] = noValues[:1:1]
	delete(h, "Content-Length")
	if http1 {
		h["Connection"] = keepAliveValues[:1:1]
	}
}

// Send encodes ev and writes and flushes it. An invalid event returns its
// encoding error and writes nothing; the stream stays usable.
func (w *Writer) Send(ev Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	buf, err := ev.AppendTo(w.buf[:0])
	if err != nil {
		return err
	}
	if cap(buf) <= 64<<10 {
		w.buf = buf
	}
	return w.writeLocked(buf, 1)
}

// Comment writes text as a comment, which clients ignore, and flushes it.
// Line breaks in text start new comment lines.
func (w *Writer) Comment(text string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	buf := AppendComment(w.buf[:0], text)
	if cap(buf) <= 64<<10 {
		w.buf = buf
	}
	return w.writeLocked(buf, 0)
}

// Flush sends the headers, if not sent yet, and anything buffered.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	return w.writeLocked(nil, 0)
}

// writeFrames writes already encoded events (events of them) in one write
// and one flush.
func (w *Writer) writeFrames(p []byte, events int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	return w.writeLocked(p, events)
}

// Events returns the number of events written so far.
func (w *Writer) Events() int64 { return w.events.Load() }

// Bytes returns the number of body bytes written so far.
func (w *Writer) Bytes() int64 { return w.bytes.Load() }

// Err returns the error that ended the stream, or nil while it is usable.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// idle returns how long ago the last write began. now must hold a
// monotonic clock reading (as time.Now's does): a wall clock that is
// stepped back neither stops heartbeats nor fires them early.
func (w *Writer) idle(now time.Time) time.Duration {
	return now.Sub(clockBase) - time.Duration(w.lastWrite.Load())
}

// open sends the headers with a first comment (": ok", and the "retry:"
// field of [WithRetry]), unless the stream started already, so that a
// browser's EventSource fires "open" before the first event.
func (w *Writer) open() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil || w.started {
		return w.err
	}
	if err := w.startLocked(); err != nil {
		return err
	}
	return w.writeLocked(w.appendRetry([]byte(": ok\n")), 0)
}

// setConfig replaces the stream's settings; see Broker.Handler.
func (w *Writer) setConfig(cfg *streamConfig) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cfg = cfg
	w.deadlines = cfg.writeTimeout > 0
}

// start sets the headers before the first write. Nothing is written when
// the writer cannot flush.
func (w *Writer) startLocked() error {
	if w.started {
		return nil
	}
	if !canFlush(w.w) {
		return ErrNoFlusher
	}
	w.started = true
	if !written(w.w) {
		setHeaders(w.w.Header(), w.http1)
	}
	return nil
}

// flushError returns the error the innermost writer w recorded when it
// flushed, for writers (behind a wrapper that hides it) that report one.
func flushError(w http.ResponseWriter) error {
	if fe, ok := w.(interface{ FlushError() error }); ok {
		return fe.FlushError()
	}
	return nil
}

// written reports whether the response headers were already sent.
func written(w http.ResponseWriter) bool {
	if gw, ok := w.(interface{ Written() bool }); ok {
		return gw.Written()
	}
	return false
}

func (w *Writer) writeLocked(p []byte, events int) error {
	if err := w.ctx.Err(); err != nil {
		w.err = fmt.Errorf("%w: %w", ErrClientGone, context.Cause(w.ctx))
		return w.err
	}
	if !w.started {
		if err := w.startLocked(); err != nil {
			return err
		}
		p = w.prelude(p)
	}
	now := time.Now()
	watched := false
	if w.deadlines {
		if w.http1 {
			w.extendDeadline(now)
		} else {
			watch.begin(w, now)
			watched = true
		}
	}
	err := w.put(p)
	if watched {
		watch.end(w)
	}
	if err != nil {
		return w.fail(err)
	}
	w.events.Add(int64(events))
	w.lastWrite.Store(int64(now.Sub(clockBase))) // when it began: one clock read per write
	return nil
}

// put writes p and flushes it through every wrapper.
func (w *Writer) put(p []byte) error {
	if len(p) > 0 {
		n, err := w.w.Write(p)
		w.bytes.Add(int64(n))
		if err != nil {
			return err
		}
	}
	// A ResponseController flushes through every wrapper; made here, it
	// stays on the stack.
	if err := http.NewResponseController(w.w).Flush(); err != nil {
		return err
	}
	if w.wrapped {
		return flushError(w.inner)
	}
	return nil
}

// prelude returns what the first write sends: the "retry:" field of
// [WithRetry], in a block of its own, before p.
func (w *Writer) prelude(p []byte) []byte {
	if w.cfg.retry <= 0 {
		return p
	}
	return append(w.appendRetry(nil), p...)
}

// appendRetry appends the "retry:" field of [WithRetry] and the blank line
// that ends its block.
func (w *Writer) appendRetry(dst []byte) []byte {
	if w.cfg.retry > 0 {
		dst = append(dst, "retry: "...)
		dst = strconv.AppendInt(dst, max(w.cfg.retry.Milliseconds(), 1), 10)
		dst = append(dst, '\n')
	}
	return append(dst, '\n')
}

// clockBase is the origin of the monotonic offsets Writers keep instead of
// times (8 bytes instead of 24).
var clockBase = time.Now()

// extendDeadline gives the next write on HTTP/1 at least half the write
// timeout: the connection's deadline is only moved once half of it has
// passed, which saves a timer update on most writes. (HTTP/2 writes are
// watched instead: see writeWatch.)
func (w *Writer) extendDeadline(now time.Time) {
	at := now.Sub(clockBase)
	if at+w.cfg.writeTimeout/2 < w.deadline {
		return
	}
	deadline := now.Add(w.cfg.writeTimeout)
	w.deadline = at + w.cfg.writeTimeout
	if err := http.NewResponseController(w.inner).SetWriteDeadline(deadline); errors.Is(err, http.ErrNotSupported) {
		w.deadlines = false
	}
}

// fail records the error that ended the stream.
func (w *Writer) fail(err error) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		w.err = fmt.Errorf("%w: %w", ErrWriteTimeout, err)
	case w.timedOut.Load(): // see writeWatch
		w.err = fmt.Errorf("%w: %w: %w", ErrWriteTimeout, os.ErrDeadlineExceeded, err)
	case w.ctx.Err() != nil:
		w.err = fmt.Errorf("%w: %w", ErrClientGone, err)
	default:
		w.err = fmt.Errorf("%w: %w", ErrWriteFailed, err)
	}
	return w.err
}

// finish gives the server a fresh write deadline to end the response after
// the handler returns, so that the deadline of the last event does not cut
// the final chunk.
func (w *Writer) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.deadlines && w.started {
		_ = http.NewResponseController(w.inner).SetWriteDeadline(time.Now().Add(w.cfg.writeTimeout))
	}
}

// config returns the stream's settings.
func (w *Writer) config() *streamConfig {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cfg
}

// isStarted reports whether the stream's headers were sent.
func (w *Writer) isStarted() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.started
}

// writeWatch ends the HTTP/2 writes that outlive their write timeout. On
// HTTP/1 a write deadline is the connection's, and moving it costs little
// (extendDeadline); net/http's HTTP/2 server sets one through the
// connection's serving goroutine and a timer of its own, and it resets an
// idle stream when it passes, so it had to be set before each write and
// cleared after. Instead, a writer is in writing while it writes, and one
// goroutine for all of them, running while any is, resets the stream of a
// write whose deadline passed (within watchTick), which ends the write.
// (Server CPU per delivery over HTTP/2, `sseload -clients 3000 -h2c 3
// -events 20 -rate 10`, four runs each: 20.0 to 21.5 µs with the
// deadlines, 15.5 to 17.8 µs watched; bare net/http 17.0 to 19.2 µs.)
type writeWatch struct {
	mu      sync.Mutex
	writing map[*Writer]time.Duration // deadlines, as monotonic offsets from clockBase
	running bool
}

var watch = writeWatch{writing: make(map[*Writer]time.Duration)}

// watchTick is how often the writes under way are checked.
const watchTick = 10 * time.Millisecond

func (ww *writeWatch) begin(w *Writer, now time.Time) {
	deadline := now.Sub(clockBase) + w.cfg.writeTimeout
	ww.mu.Lock()
	ww.writing[w] = deadline
	if !ww.running {
		ww.running = true
		go ww.run()
	}
	ww.mu.Unlock()
}

func (ww *writeWatch) end(w *Writer) {
	ww.mu.Lock()
	delete(ww.writing, w)
	ww.mu.Unlock()
}

// run checks the writes under way every watchTick, until there are none.
func (ww *writeWatch) run() {
	t := time.NewTicker(watchTick)
	defer t.Stop()
	var late []*Writer
	for now := range t.C {
		at := now.Sub(clockBase)
		ww.mu.Lock()
		if len(ww.writing) == 0 {
			ww.running = false
			ww.mu.Unlock()
			return
		}
		for w, deadline := range ww.writing {
			if at >= deadline {
				delete(ww.writing, w)
				late = append(late, w)
			}
		}
		ww.mu.Unlock()
		for i, w := range late {
			w.timedOut.Store(true)
			// A deadline in the past resets the stream at once; that
			// waits for the connection's serving goroutine, so not under
			// the lock, and not in this goroutine.
			go func() { _ = http.NewResponseController(w.inner).SetWriteDeadline(time.Unix(0, 1)) }()
			late[i] = nil
		}
		late = late[:0]
	}
}
