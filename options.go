package sse

import "time"

// Defaults used when no option overrides them.
const (
	// DefaultHeartbeat is the interval between heartbeat comments on an
	// idle stream.
	DefaultHeartbeat = 15 * time.Second
	// DefaultWriteTimeout bounds each write to a client. A client that
	// stops reading for this long ends its stream with an error.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultLastEventIDQuery is the query parameter read for the last
	// event ID when the Last-Event-ID header is absent.
	DefaultLastEventIDQuery = "lastEventId"
	// DefaultMaxEventSize is the largest event a [Decoder] accepts.
	DefaultMaxEventSize = 4 << 20
)

// Option configures the package's entry points. All options share one type
// so that the same settings can be given to [Middleware] (for every stream
// of a route) or to a single call such as [Stream]. Each option's
// documentation says where it applies; elsewhere it is ignored.
type Option func(*config)

type config struct {
	writeTimeout     time.Duration
	heartbeat        time.Duration
	retry            time.Duration
	requireAccept    bool
	lastEventIDQuery string
	done             <-chan struct{}
	eventName        string
	maxEventSize     int
}

func newConfig(opts []Option) config {
	c := config{
		writeTimeout:     DefaultWriteTimeout,
		heartbeat:        DefaultHeartbeat,
		lastEventIDQuery: DefaultLastEventIDQuery,
		maxEventSize:     DefaultMaxEventSize,
	}
	c.apply(opts)
	return c
}

func (c *config) apply(opts []Option) {
	for _, o := range opts {
		if o != nil {
			o(c)
		}
	}
}

// WithWriteTimeout bounds every write (and flush) to the client: before each
// write the connection's write deadline is moved to now+d, so a client that
// stopped reading ends the stream with an error wrapping [ErrWriteTimeout]
// instead of blocking it forever, and http.Server.WriteTimeout does not cut
// healthy long-lived streams. Zero disables the deadline. Default
// [DefaultWriteTimeout]. Applies to [Middleware], [NewWriter] and, when no
// middleware prepared the stream, to the helpers and [Stream].
func WithWriteTimeout(d time.Duration) Option {
	return func(c *config) { c.writeTimeout = max(d, 0) }
}

// WithHeartbeat sets the interval of the heartbeat comment that [Stream]
// writes when nothing else was written for that long. It keeps proxies from
// closing idle streams and finds dead clients. Zero disables heartbeats.
// Default [DefaultHeartbeat]. Applies to [Middleware] (as the default for its
// streams) and [Stream].
func WithHeartbeat(d time.Duration) Option {
	return func(c *config) { c.heartbeat = max(d, 0) }
}

// WithRetry makes [Middleware] send a "retry:" field with its first comment,
// asking the client to wait d before reconnecting. Browsers wait about 3 s
// by default.
func WithRetry(d time.Duration) Option {
	return func(c *config) { c.retry = max(d, 0) }
}

// WithRequireAccept makes [Middleware] answer 406 Not Acceptable to requests
// whose Accept header is present and does not allow text/event-stream.
func WithRequireAccept() Option {
	return func(c *config) { c.requireAccept = true }
}

// WithLastEventIDQuery names the query parameter that [LastEventID] falls
// back to when the Last-Event-ID header is absent (for clients that cannot
// set headers). Empty disables the fallback. Default
// [DefaultLastEventIDQuery]. Applies to [Middleware].
func WithLastEventIDQuery(name string) Option {
	return func(c *config) { c.lastEventIDQuery = name }
}

// WithDone ends [Stream] (returning nil) when done is closed. Wire it to the
// server's shutdown so that http.Server.Shutdown does not wait for streams:
// see the package example. Applies to [Middleware] (for its streams) and
// [Stream].
func WithDone(done <-chan struct{}) Option {
	return func(c *config) { c.done = done }
}

// WithEventName gives every value sent by [Stream] this event name, unless
// the value is an [Event] or implements [EventNamer]. Applies to [Stream].
func WithEventName(name string) Option {
	return func(c *config) { c.eventName = name }
}

// WithMaxEventSize sets the largest event, in bytes of wire lines, that a
// [Decoder] accepts before it fails with [ErrEventTooLarge]. Default
// [DefaultMaxEventSize]. Applies to [NewDecoder].
func WithMaxEventSize(n int) Option {
	return func(c *config) { c.maxEventSize = n }
}
