// Package client is a Go EventSource: it reads a server-sent event stream
// over HTTP, parses it with [sse.Decoder] (the project's one parser) and
// reconnects the way the WHATWG HTML standard says a browser does, with
// exponential backoff on top for servers that keep failing.
//
// The primary way to read events is a range loop over [Client.Events]:
//
//	c := client.New("https://example.com/events?topic=kitchen")
//	for ev, err := range c.Events(ctx) {
//		if err != nil {
//			return err // ctx.Err(), a fatal answer, or a give-up
//		}
//		fmt.Println(ev.ID, ev.Event, ev.Data)
//	}
//
// [Client.Run] is the same loop with a callback.
//
// # Connecting
//
// Each connection is a GET (see [WithBody] for another method) with
// Accept: text/event-stream, Cache-Control: no-cache, the headers of
// [WithHeader], and Last-Event-ID when the stream has set a last event ID.
// The answer must be 200 with a Content-Type of text/event-stream;
// anything else ends the client for good, as it ends a browser's
// EventSource: a 204 with an error that matches [ErrNoContent], another
// status with a [*StatusError], another Content-Type with an error that
// matches [ErrContentType]. Redirects are followed by the [http.Client].
//
// # Reconnecting
//
// When a connection fails, or the stream ends (with an error or cleanly),
// the client waits and connects again with Last-Event-ID set to the
// stream's last event ID. The wait is the reconnection time: the last
// "retry:" value the stream sent, or [WithRetry] (default [DefaultRetry],
// 3 s as in browsers) before it sent one. After a connection that worked
// (it delivered at least one event, or stayed open at least as long as the
// maximum backoff) the wait is exactly the reconnection time. Each attempt
// in a row that failed (no connection, a read error, or a stream that ended
// without delivering an event) doubles the wait, with jitter: after n
// failures the wait is a random duration in [max(r·2ⁿ⁻¹, r), r·2ⁿ], where r
// is the reconnection time, capped at [WithMaxBackoff] (default
// [DefaultMaxBackoff], never below r).
//
// The client never gives up by itself. [WithMaxAttempts] and
// [WithMaxElapsed] set limits; reaching one ends the client with an error
// that matches [ErrGaveUp] and wraps the last failure.
// [WithoutReconnect] turns reconnection off, for one-shot streams such as
// LLM responses.
//
// # Errors
//
// An event larger than [WithMaxEventSize] ends the client with an error
// that matches [sse.ErrEventTooLarge], without reconnecting: the server
// would most likely replay the same event and the client would loop.
// Canceling the context ends everything promptly with ctx.Err(); no
// goroutine is left behind.
package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gin-sse/sse"
)

// Defaults used when no option overrides them.
const (
	// DefaultRetry is the reconnection time until the stream sets one
	// with "retry:", as in browsers.
	DefaultRetry = 3 * time.Second
	// DefaultMaxBackoff caps the wait between attempts that keep failing.
	DefaultMaxBackoff = 30 * time.Second
)

// Errors that end a [Client]. Test for them with [errors.Is].
var (
	// ErrNoContent matches a 204 No Content answer, the server's way to
	// tell a client to stop reconnecting. The error is a [*StatusError].
	ErrNoContent = errors.New("client: server answered 204 No Content")
	// ErrContentType reports an answer whose Content-Type is not
	// text/event-stream.
	ErrContentType = errors.New("client: response is not text/event-stream")
	// ErrGaveUp reports that [WithMaxAttempts] or [WithMaxElapsed] was
	// reached. The error wraps the last failure too.
	ErrGaveUp = errors.New("client: gave up reconnecting")
)

// StatusError reports an answer with a status other than 200. The client
// does not reconnect after it.
type StatusError struct {
	StatusCode int         // such as 503
	Status     string      // such as "503 Service Unavailable"
	Header     http.Header // the answer's headers (Retry-After, say)
	Body       string      // the start of the body (at most 512 bytes)
}

// Error describes the refused answer.
func (e *StatusError) Error() string {
	msg := "client: server answered " + e.Status
	if b := strings.TrimSpace(e.Body); b != "" {
		msg += ": " + b
	}
	return msg
}

// Is makes a 204 match [ErrNoContent].
func (e *StatusError) Is(target error) bool {
	return target == ErrNoContent && e.StatusCode == http.StatusNoContent
}

// Option configures a [Client].
type Option interface {
	apply(*config)
}

// optionFunc is an Option that is a function.
type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	httpClient   *http.Client
	header       http.Header
	method       string
	body         []byte
	contentType  string
	lastEventID  string
	retry        time.Duration
	maxBackoff   time.Duration
	maxAttempts  int
	maxElapsed   time.Duration
	maxEventSize int
	oneShot      bool
	onOpen       func(*http.Response)
	onError      func(error)
	onRetry      func(attempt int, delay time.Duration)
}

// defaultHTTPClient has no Timeout: a Timeout would cut long streams.
var defaultHTTPClient = &http.Client{}

// WithHTTPClient sends the requests with hc (default: an http.Client with
// no Timeout and the default transport). A Timeout on hc bounds each whole
// connection, stream included, so the stream is cut and resumed after it.
func WithHTTPClient(hc *http.Client) Option {
	return optionFunc(func(c *config) { c.httpClient = hc })
}

// WithHeader adds a header to every request, such as Authorization. It may
// be given several times. Accept and Cache-Control set here replace the
// client's defaults; Last-Event-ID is the client's own (see
// [WithLastEventID]).
func WithHeader(key, value string) Option {
	return optionFunc(func(c *config) { c.header.Add(key, value) })
}

// WithBody sends every request (reconnections too) with method and body,
// of the given Content-Type, instead of a GET without body. It suits
// streaming APIs that take a POST, usually with [WithoutReconnect].
func WithBody(method, contentType string, body []byte) Option {
	return optionFunc(func(c *config) { c.method, c.contentType, c.body = method, contentType, body })
}

// WithLastEventID sets the last event ID to send on the first connection,
// to resume a stream read earlier (see [Client.LastEventID]). It may not
// contain CR, LF or NUL.
func WithLastEventID(id string) Option {
	return optionFunc(func(c *config) { c.lastEventID = id })
}

// WithRetry sets the reconnection time used until the stream sends
// "retry:". Default [DefaultRetry].
func WithRetry(d time.Duration) Option {
	return optionFunc(func(c *config) { c.retry = d })
}

// WithMaxBackoff caps the wait between attempts that keep failing.
// Default [DefaultMaxBackoff]. The wait is never below the reconnection
// time, so a cap at or below it turns the backoff off.
func WithMaxBackoff(d time.Duration) Option {
	return optionFunc(func(c *config) { c.maxBackoff = d })
}

// WithMaxAttempts makes the client give up, with [ErrGaveUp], when n
// attempts in a row have failed (see the package documentation for what
// counts as failed). Zero, the default, means no limit.
func WithMaxAttempts(n int) Option {
	return optionFunc(func(c *config) { c.maxAttempts = n })
}

// WithMaxElapsed makes the client give up, with [ErrGaveUp], rather than
// wait past d since the last connection that worked (or since the start).
// Zero, the default, means no limit.
func WithMaxElapsed(d time.Duration) Option {
	return optionFunc(func(c *config) { c.maxElapsed = d })
}

// WithMaxEventSize sets the largest event accepted, in bytes of wire lines
// (see [sse.WithMaxEventSize]). Default [sse.DefaultMaxEventSize]. A
// larger event ends the client with an error matching
// [sse.ErrEventTooLarge].
func WithMaxEventSize(n int) Option {
	return optionFunc(func(c *config) { c.maxEventSize = n })
}

// WithoutReconnect makes the client read one stream only: a clean end
// returns nil, and any failure is returned at once. For responses that
// must not be requested twice, such as LLM completions.
func WithoutReconnect() Option {
	return optionFunc(func(c *config) { c.oneShot = true })
}

// OnOpen calls fn when a connection is accepted (status 200 and an event
// stream), as soon as its headers arrive and before any event is read.
// fn may read res.Header; closing res.Body cuts the connection.
func OnOpen(fn func(res *http.Response)) Option {
	return optionFunc(func(c *config) { c.onOpen = fn })
}

// OnError calls fn with the reason of each failed attempt or ended
// connection, retried or not: io.EOF for a stream that ended cleanly. It is
// not called when the context is canceled or the callback returns an
// error.
func OnError(fn func(err error)) Option {
	return optionFunc(func(c *config) { c.onError = fn })
}

// OnRetry calls fn before each wait for a reconnection, with the number of
// the coming attempt in the current run of failures (1 after a connection
// that worked) and the wait.
func OnRetry(fn func(attempt int, delay time.Duration)) Option {
	return optionFunc(func(c *config) { c.onRetry = fn })
}

// Client reads one event stream, reconnecting as needed. Create it with
// [New]. Run one [Client.Run] or [Client.Events] loop at a time; a later
// loop resumes from the [Client.LastEventID] and reconnection time the
// earlier one reached. All hooks are called from the loop's goroutine.
type Client struct {
	url string
	cfg config

	mu     sync.Mutex
	lastID string
	retry  time.Duration
}

// New returns a client for url. Nothing is sent until [Client.Run] or
// [Client.Events].
func New(url string, opts ...Option) *Client {
	cfg := config{
		httpClient:   defaultHTTPClient,
		header:       make(http.Header),
		method:       http.MethodGet,
		retry:        DefaultRetry,
		maxBackoff:   DefaultMaxBackoff,
		maxEventSize: sse.DefaultMaxEventSize,
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	if cfg.httpClient == nil {
		cfg.httpClient = defaultHTTPClient
	}
	cfg.retry = max(cfg.retry, 0)
	return &Client{url: url, cfg: cfg, lastID: cfg.lastEventID, retry: cfg.retry}
}

// LastEventID returns the stream's last event ID so far: the one sent as
// Last-Event-ID on the next connection. It is safe to call at any time.
func (c *Client) LastEventID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastID
}

// errStop ends Run from the Events iterator when the loop breaks.
var errStop = errors.New("client: stopped")

// Events returns the stream's events as an iterator, the primary way to
// read them. It yields (event, nil) for each event. It ends after yielding
// (zero Event, err) when the client stops with an error (see [Client.Run]
// for which), or without an error when a one-shot stream ends cleanly.
// Breaking out of the loop closes the connection.
func (c *Client) Events(ctx context.Context) iter.Seq2[sse.ReceivedEvent, error] {
	return func(yield func(sse.ReceivedEvent, error) bool) {
		err := c.Run(ctx, func(ev sse.ReceivedEvent) error {
			if !yield(ev, nil) {
				return errStop
			}
			return nil
		})
		if err != nil && err != errStop {
			yield(sse.ReceivedEvent{}, err)
		}
	}
}

// Run connects and calls fn with each event, in order, until it stops. It
// returns:
//
//   - ctx.Err() when ctx is canceled, at once, even while a read or a wait
//     is blocked;
//   - fn's error as it is, when fn returns one (the connection is closed);
//   - a fatal answer: [*StatusError] ([ErrNoContent] for 204), or an error
//     matching [ErrContentType];
//   - an error matching [sse.ErrEventTooLarge];
//   - an error matching [ErrGaveUp] when a limit is set and reached;
//   - with [WithoutReconnect], nil at a clean end of the stream, or the
//     failure as it is (such as [io.ErrUnexpectedEOF] for an event cut
//     off by the end of the stream).
//
// Otherwise it reconnects for ever, as described in the package
// documentation.
func (c *Client) Run(ctx context.Context, fn func(sse.ReceivedEvent) error) error {
	if fn == nil {
		return errors.New("client: nil callback")
	}
	c.mu.Lock()
	lastID, retry := c.lastID, c.retry
	c.mu.Unlock()
	if strings.ContainsAny(lastID, "\r\n\x00") {
		return fmt.Errorf("client: invalid last event ID %q", lastID)
	}
	failures, since := 0, time.Now()
	for {
		healthy, err := c.attempt(ctx, fn, &lastID, &retry)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var he handlerError
		if errors.As(err, &he) {
			return he.err
		}
		var fe fatalError
		fatal := errors.As(err, &fe)
		if fatal {
			err = fe.err
		}
		if c.cfg.onError != nil {
			c.cfg.onError(err)
		}
		if fatal {
			return err
		}
		if c.cfg.oneShot {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if healthy {
			failures, since = 0, time.Now()
		} else {
			failures++
		}
		delay := c.backoff(retry, failures)
		if c.cfg.maxAttempts > 0 && failures >= c.cfg.maxAttempts {
			return fmt.Errorf("%w after %d failed attempts: %w", ErrGaveUp, failures, err)
		}
		if c.cfg.maxElapsed > 0 && failures > 0 && time.Since(since)+delay > c.cfg.maxElapsed {
			return fmt.Errorf("%w after failing for %v: %w", ErrGaveUp, time.Since(since).Round(time.Millisecond), err)
		}
		if c.cfg.onRetry != nil {
			c.cfg.onRetry(failures+1, delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// backoff returns the wait before the next attempt after failures
// attempts in a row failed.
func (c *Client) backoff(retry time.Duration, failures int) time.Duration {
	if failures == 0 {
		return retry
	}
	limit := max(c.cfg.maxBackoff, retry)
	d := retry
	for i := 0; i < failures && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	lo := max(d/2, retry)
	if d > lo {
		d = lo + rand.N(d-lo+1)
	}
	return d
}

// handlerError carries the callback's error out of attempt.
type handlerError struct{ err error }

func (e handlerError) Error() string { return e.err.Error() }

// fatalError marks an error after which the client does not reconnect.
type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }

// attempt makes one connection and reads it to its end. healthy reports a
// connection that worked: it delivered an event or stayed open at least
// the maximum backoff. A clean end of the stream is io.EOF.
func (c *Client) attempt(ctx context.Context, fn func(sse.ReceivedEvent) error, lastID *string, retry *time.Duration) (healthy bool, err error) {
	var body io.Reader
	if c.cfg.body != nil {
		body = bytes.NewReader(c.cfg.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.cfg.method, c.url, body)
	if err != nil {
		return false, fatalError{fmt.Errorf("client: %w", err)}
	}
	for k, v := range c.cfg.header {
		req.Header[k] = append([]string(nil), v...)
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "text/event-stream")
	}
	if req.Header.Get("Cache-Control") == "" {
		req.Header.Set("Cache-Control", "no-cache")
	}
	req.Header.Del("Last-Event-ID")
	if *lastID != "" {
		req.Header.Set("Last-Event-ID", *lastID)
	}
	if c.cfg.body != nil && c.cfg.contentType != "" {
		req.Header.Set("Content-Type", c.cfg.contentType)
	}
	res, err := c.cfg.httpClient.Do(req)
	if err != nil {
		return false, err
	}
	defer res.Body.Close()
	if err := check(res); err != nil {
		return false, fatalError{err}
	}
	opened := time.Now()
	if c.cfg.onOpen != nil {
		c.cfg.onOpen(res)
	}

	// The last event ID carries over from the previous connection.
	dec := sse.NewDecoder(res.Body, sse.WithMaxEventSize(c.cfg.maxEventSize), sse.WithLastEventID(*lastID))
	events := 0
	defer func() {
		healthy = events > 0 || time.Since(opened) >= c.cfg.maxBackoff
	}()
	for {
		ev, err := dec.Decode()
		c.mu.Lock()
		*lastID = dec.LastEventID()
		c.lastID = *lastID
		if d, ok := dec.Retry(); ok {
			*retry, c.retry = d, d
		}
		c.mu.Unlock()
		if err != nil {
			if errors.Is(err, sse.ErrEventTooLarge) {
				return false, fatalError{fmt.Errorf("client: %w", err)}
			}
			return false, err
		}
		events++
		if err := fn(ev); err != nil {
			return false, handlerError{err}
		}
	}
}

// check refuses an answer that is not an event stream.
func check(res *http.Response) error {
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return &StatusError{StatusCode: res.StatusCode, Status: res.Status, Header: res.Header, Body: string(b)}
	}
	ct := res.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "text/event-stream" {
		return fmt.Errorf("%w: Content-Type %q", ErrContentType, ct)
	}
	return nil
}
