package sse

import (
	"time"

	"github.com/gin-gonic/gin"
)

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
	lastEventID      string

	// broker
	backend        Backend
	historyCount   int
	historyAge     time.Duration
	historyBytes   int
	queueSize      int
	overflow       OverflowPolicy
	maxSubscribers int
	maxPerIP       int
	retryAfter     time.Duration
	knownTopics    map[string]struct{}
	authorize      func(*gin.Context, []string) error
	onSubscribe    func(SubscriberInfo)
	onUnsubscribe  func(SubscriberInfo)
	shutdownEvent  *Event
	initialEvents  func(*gin.Context, []string) ([]Event, error)
}

func newConfig(opts []Option) config {
	c := config{
		writeTimeout:     DefaultWriteTimeout,
		heartbeat:        DefaultHeartbeat,
		lastEventIDQuery: DefaultLastEventIDQuery,
		maxEventSize:     DefaultMaxEventSize,
		historyCount:     DefaultHistoryCount,
		historyAge:       DefaultHistoryAge,
		historyBytes:     DefaultHistoryBytes,
		queueSize:        DefaultQueueSize,
		retryAfter:       5 * time.Second,
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

// WithWriteTimeout bounds every write (and flush) to the client. Before a
// write the connection's write deadline is moved to now+d (on HTTP/1 only
// once half of it has passed, so each write gets between d/2 and d). A
// client that stopped reading ends the stream with an error wrapping
// [ErrWriteTimeout] instead of blocking it forever, and
// http.Server.WriteTimeout does not cut healthy long-lived streams. Zero disables the deadline. Default
// [DefaultWriteTimeout]. Applies to [Middleware], [NewWriter] and, when no
// middleware prepared the stream, to the helpers and [Stream].
func WithWriteTimeout(d time.Duration) Option {
	return func(c *config) { c.writeTimeout = max(d, 0) }
}

// WithHeartbeat sets the interval of the heartbeat comment that [Stream]
// and the broker's streams write when nothing else was written for that
// long. It keeps proxies from closing idle streams and finds dead clients.
// Zero disables heartbeats. Default [DefaultHeartbeat]. Applies to
// [Middleware] (as the default for its streams), [Stream], [NewBroker] and
// [Broker.Handler]. A broker stream's heartbeat goes out within 100 ms of
// being due (the broker checks its streams on one timer).
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

// WithBackend makes [NewBroker] store and carry events through backend
// instead of a new in-memory history. [Broker.Shutdown] closes it.
func WithBackend(backend Backend) Option {
	return func(c *config) { c.backend = backend }
}

// WithHistory bounds the in-memory history of [NewBroker]: at most count
// events, none older than age, at most bytes of encoded events (zero: no
// limit of that kind). Defaults [DefaultHistoryCount], [DefaultHistoryAge],
// [DefaultHistoryBytes]. A client whose Last-Event-ID fell out of the
// history gets the [LostEventName] signal.
func WithHistory(count int, age time.Duration, bytes int) Option {
	return func(c *config) { c.historyCount, c.historyAge, c.historyBytes = count, age, bytes }
}

// WithQueueSize sets how many events a subscriber of [NewBroker] may have
// queued before [WithOverflow]'s policy applies. Default [DefaultQueueSize].
func WithQueueSize(n int) Option {
	return func(c *config) { c.queueSize = max(n, 1) }
}

// WithOverflow sets what [NewBroker] does with a subscriber whose queue is
// full. Default [OverflowDisconnect].
func WithOverflow(p OverflowPolicy) Option {
	return func(c *config) { c.overflow = p }
}

// WithMaxSubscribers caps the subscribers of [NewBroker]; beyond it the
// handler answers 503 with Retry-After. Zero means no cap.
func WithMaxSubscribers(n int) Option {
	return func(c *config) { c.maxSubscribers = max(n, 0) }
}

// WithMaxPerIP caps the streams of [NewBroker] from one client IP (as
// gin's Context.ClientIP gives it); beyond it the handler answers 429 with
// Retry-After. Zero means no cap.
func WithMaxPerIP(n int) Option {
	return func(c *config) { c.maxPerIP = max(n, 0) }
}

// WithRetryAfter sets the Retry-After the handler of [NewBroker] sends with
// 503 and 429. Default 5 s.
func WithRetryAfter(d time.Duration) Option {
	return func(c *config) { c.retryAfter = d }
}

// WithTopics restricts [NewBroker] to these topics: subscribing to another
// answers 404 and publishing to another fails, both with [ErrUnknownTopic].
func WithTopics(topics ...string) Option {
	return func(c *config) {
		c.knownTopics = make(map[string]struct{}, len(topics))
		for _, t := range topics {
			c.knownTopics[t] = struct{}{}
		}
	}
}

// WithAuthorize gives [NewBroker]'s handler a hook that sees the request
// and its topics before the stream starts. Returning an error refuses the
// request: with 403, or with the status of a [*StatusError] (say 401 for a
// missing login). The hook may refuse for one topic or for all.
func WithAuthorize(fn func(c *gin.Context, topics []string) error) Option {
	return func(c *config) { c.authorize = fn }
}

// WithOnSubscribe sets a hook [NewBroker] calls after each subscriber is
// added (outside the broker's locks, so it may publish).
func WithOnSubscribe(fn func(SubscriberInfo)) Option {
	return func(c *config) { c.onSubscribe = fn }
}

// WithOnUnsubscribe sets a hook [NewBroker] calls after each subscriber is
// removed (outside the broker's locks, so it may publish).
func WithOnUnsubscribe(fn func(SubscriberInfo)) Option {
	return func(c *config) { c.onUnsubscribe = fn }
}

// WithShutdownEvent makes [Broker.Shutdown] send ev to every stream before
// ending it, for instance Event{Retry: 10 * time.Second, Comment: "restart"}
// to space out reconnects, or a named event the page shows.
func WithShutdownEvent(ev Event) Option {
	return func(c *config) { c.shutdownEvent = &ev }
}

// WithInitialEvents gives [Broker.Handler] the events a client starts with
// when it has nothing to resume from: a first connection, or a
// Last-Event-ID that cannot be replayed (then they follow the
// [LostEventName] signal). Send the current state here so that a fresh page
// is never blank. fn runs after the client is subscribed, so no change is
// missed between the state and the live events (one may arrive both ways;
// full-state events make that harmless). Events without an ID get the
// broker's current position as id, so a reconnect resumes after that
// state. An error refuses the request (500, or a [*StatusError]'s status).
func WithInitialEvents(fn func(c *gin.Context, topics []string) ([]Event, error)) Option {
	return func(c *config) { c.initialEvents = fn }
}

// WithLastEventID makes a [Decoder] start with this last event ID, as a
// client reconnecting with Last-Event-ID does: ids persist across the
// connections of one event source. Applies to [NewDecoder].
func WithLastEventID(id string) Option {
	return func(c *config) { c.lastEventID = id }
}

// needsIP reports whether anything reads a subscriber's client IP: the
// per-IP limit or the subscribe hooks.
func (c *config) needsIP() bool {
	return c.maxPerIP > 0 || c.onSubscribe != nil || c.onUnsubscribe != nil
}
