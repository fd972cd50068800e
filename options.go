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

// Each entry point takes its own option type, so that an option that does
// not apply there does not compile. The stream settings form a chain: a
// [WriterOption] is also a [MiddlewareOption], which is also a
// [HandlerOption], since [Middleware] configures a Writer and
// [Broker.Handler] does the middleware's work itself.

// HandlerOption configures [Broker.Handler]: every [MiddlewareOption], and
// [WithAuthorize] and [WithInitialEvents].
type HandlerOption interface {
	applyHandler(*handlerConfig)
}

// MiddlewareOption configures [Middleware] and the streams of its route:
// every [WriterOption], and [WithHeartbeat], [WithDone],
// [WithRequireAccept] and [WithLastEventIDQuery]. Each is also a
// [HandlerOption].
type MiddlewareOption interface {
	HandlerOption
	middlewareOption()
}

// WriterOption configures a [Writer] made by [NewWriter]: [WithWriteTimeout]
// and [WithRetry]. Each is also a [MiddlewareOption] and a [HandlerOption].
type WriterOption interface {
	MiddlewareOption
	writerOption()
}

// StreamOption configures one call of [Stream] or [StreamSeq]:
// [WithEventName]. The stream's connection settings (heartbeat, write
// timeout, done channel) are those of the [Middleware] in front, or the
// defaults.
type StreamOption interface {
	applyStream(*valueConfig)
}

// BrokerOption configures [NewBroker].
type BrokerOption interface {
	applyBroker(*brokerConfig)
}

// DecoderOption configures [NewDecoder]: [WithMaxEventSize] and
// [WithLastEventID].
type DecoderOption interface {
	applyDecoder(*decoderConfig)
}

// streamConfig holds the settings of a stream's connection. A route's
// streams share one, read only.
type streamConfig struct {
	writeTimeout     time.Duration
	heartbeat        time.Duration
	retry            time.Duration
	requireAccept    bool
	lastEventIDQuery string
	done             <-chan struct{}
}

func defaultStreamConfig() streamConfig {
	return streamConfig{
		writeTimeout:     DefaultWriteTimeout,
		heartbeat:        DefaultHeartbeat,
		lastEventIDQuery: DefaultLastEventIDQuery,
	}
}

// handlerConfig holds the settings of a broker's handler.
type handlerConfig struct {
	stream        streamConfig
	streamOpts    []HandlerOption // the stream options given, to apply over a Middleware's
	authorize     func(*gin.Context, []string) error
	initialEvents func(*gin.Context, []string) ([]Event, error)
}

// valueConfig holds the settings of one Stream call.
type valueConfig struct {
	eventName string
	heartbeat *Event // sent instead of the heartbeat comment
}

// brokerConfig holds the settings of a broker.
type brokerConfig struct {
	backend        Backend
	retentionBytes int
	retentionAge   time.Duration
	topicPolicy    func(string) TopicPolicy
	maxTopics      int
	maxSubscribers int
	maxPerIP       int
	clientIPFunc   func(*gin.Context) string
	retryAfter     time.Duration
	knownTopics    map[string]struct{}
	onSubscribe    func(SubscriberInfo)
	onUnsubscribe  func(SubscriberInfo)
	observer       Observer
	presence       bool
	identify       func(*gin.Context) (string, any)
	presenceEvent  string
	presenceTopics func(string) bool
	presenceTTL    time.Duration
	shutdownEvent  *Event
}

// presenceTTLOrDefault returns the time to live of this instance's
// presence entries in a shared backend.
func (c *brokerConfig) presenceTTLOrDefault() time.Duration {
	if c.presenceTTL > 0 {
		return c.presenceTTL
	}
	return DefaultPresenceTTL
}

// policy returns the policy of topic t.
func (c *brokerConfig) policy(t string) TopicPolicy {
	if c.topicPolicy == nil {
		return TopicPolicy{}
	}
	return c.topicPolicy(t)
}

// clientIP returns the address the per-IP limit counts a request under.
func (c *brokerConfig) clientIP(ctx *gin.Context) string {
	if c.clientIPFunc != nil {
		return c.clientIPFunc(ctx)
	}
	return ctx.RemoteIP()
}

// decoderConfig holds the settings of a Decoder.
type decoderConfig struct {
	maxEventSize int
	lastEventID  string
}

// streamOpt is a stream setting that applies to Middleware and
// Broker.Handler; writerOpt is one that also applies to NewWriter.
type (
	streamOpt  func(*streamConfig)
	writerOpt  struct{ streamOpt }
	handlerOpt func(*handlerConfig)
	valueOpt   func(*valueConfig)
	brokerOpt  func(*brokerConfig)
	decoderOpt func(*decoderConfig)
)

func (o streamOpt) applyHandler(c *handlerConfig) {
	o(&c.stream)
	c.streamOpts = append(c.streamOpts, o)
}
func (streamOpt) middlewareOption() {}
func (writerOpt) writerOption()     {}

func (o handlerOpt) applyHandler(c *handlerConfig) { o(c) }
func (o valueOpt) applyStream(c *valueConfig)      { o(c) }
func (o brokerOpt) applyBroker(c *brokerConfig)    { o(c) }
func (o decoderOpt) applyDecoder(c *decoderConfig) { o(c) }

// applyStreamOpts applies opts (Middleware's or NewWriter's) to c.
func applyStreamOpts[O MiddlewareOption](c *streamConfig, opts []O) {
	h := handlerConfig{stream: *c}
	for _, o := range opts {
		if any(o) != nil {
			o.applyHandler(&h)
		}
	}
	*c = h.stream
}

// WithWriteTimeout bounds every write (and flush) to the client. On
// HTTP/1, before a write, the connection's write deadline is moved to
// now+d, once half of it has passed, so each write gets between d/2 and
// d; on HTTP/2 a write still under way after d (within 10 ms) has its
// stream reset. A client that stopped reading ends the stream with an
// error wrapping [ErrWriteTimeout] instead of blocking it forever, and
// http.Server.WriteTimeout does not cut healthy long-lived streams. Zero
// disables the deadline. Default [DefaultWriteTimeout].
func WithWriteTimeout(d time.Duration) WriterOption {
	return writerOpt{func(c *streamConfig) { c.writeTimeout = max(d, 0) }}
}

// WithRetry sends a "retry:" field before the first event, asking the
// client to wait d before reconnecting. Browsers wait about 3 s by default;
// a shorter wait shrinks the gap a replay has to cover.
func WithRetry(d time.Duration) WriterOption {
	return writerOpt{func(c *streamConfig) { c.retry = max(d, 0) }}
}

// WithHeartbeat sets the interval of the heartbeat comment that [Stream],
// [StreamSeq] and the broker's streams write when nothing else was written
// for that long. It keeps proxies from closing idle streams and finds dead
// clients. Zero disables heartbeats. Default [DefaultHeartbeat].
func WithHeartbeat(d time.Duration) MiddlewareOption {
	return streamOpt(func(c *streamConfig) { c.heartbeat = max(d, 0) })
}

// WithRequireAccept answers 406 Not Acceptable to requests whose Accept
// header is present and does not allow text/event-stream.
func WithRequireAccept() MiddlewareOption {
	return streamOpt(func(c *streamConfig) { c.requireAccept = true })
}

// WithLastEventIDQuery names the query parameter that [LastEventID] and
// the broker fall back to when the Last-Event-ID header is absent (for
// clients that cannot set headers). Empty disables the fallback. Default
// [DefaultLastEventIDQuery].
func WithLastEventIDQuery(name string) MiddlewareOption {
	return streamOpt(func(c *streamConfig) { c.lastEventIDQuery = name })
}

// WithDone ends the route's streams when done is closed: [Stream] and
// [StreamSeq] return nil, and a broker stream ends. Wire it
// to the server's shutdown so that http.Server.Shutdown does not wait for
// streams:
//
//	shutdown := make(chan struct{})
//	srv.RegisterOnShutdown(func() { close(shutdown) })
//	r.GET("/ticks", sse.Middleware(sse.WithDone(shutdown)), ticks)
func WithDone(done <-chan struct{}) MiddlewareOption {
	return streamOpt(func(c *streamConfig) { c.done = done })
}

// WithEventName gives every value sent by [Stream] or [StreamSeq] this
// event name, unless the value is an [Event] or implements [EventNamer].
func WithEventName(name string) StreamOption {
	return valueOpt(func(c *valueConfig) { c.eventName = name })
}

// WithHeartbeatEvent makes [Stream] and [StreamSeq] send ev as their
// heartbeat instead of a comment, for protocols whose clients expect an
// event of their own while the stream is idle (Anthropic's "ping", say).
// Like the comment, it goes out only after a heartbeat interval without a
// write. An invalid ev (see [Event.Validate], or Data that does not
// encode) makes Stream return its error wrapping [ErrInvalidEvent] at
// once, before it writes anything.
func WithHeartbeatEvent(ev Event) StreamOption {
	return valueOpt(func(c *valueConfig) { c.heartbeat = &ev })
}

// WithMaxEventSize sets the largest event, in bytes of wire lines, that a
// [Decoder] accepts before it fails with [ErrEventTooLarge]; zero or less
// means no limit. Default [DefaultMaxEventSize].
func WithMaxEventSize(n int) DecoderOption {
	return decoderOpt(func(c *decoderConfig) { c.maxEventSize = n })
}

// WithLastEventID makes a [Decoder] start with this last event ID, as a
// client reconnecting with Last-Event-ID does: ids persist across the
// connections of one event source.
func WithLastEventID(id string) DecoderOption {
	return decoderOpt(func(c *decoderConfig) { c.lastEventID = id })
}

// WithBackend makes [NewBroker] store and carry events through backend
// instead of a new in-memory history. [Broker.Shutdown] closes it.
func WithBackend(backend Backend) BrokerOption {
	return brokerOpt(func(c *brokerConfig) { c.backend = backend })
}

// WithRetention bounds the history the broker keeps, over all its topics:
// at most bytes of memory (the chunks that hold the events' encodings,
// each topic its own, and 48 bytes of bookkeeping per event and topic),
// none older than age (zero or less: no limit of that kind). The newest event is always kept. Defaults
// [DefaultRetentionBytes] and [DefaultRetentionAge]. A stream or a
// reconnecting client that needs events the history no longer holds gets
// the [LostEventName] signal, then the oldest events still kept.
func WithRetention(bytes int, age time.Duration) BrokerOption {
	return brokerOpt(func(c *brokerConfig) { c.retentionBytes, c.retentionAge = bytes, age })
}

// WithTopicPolicy sets limits of each topic's own history, besides those
// of [WithRetention]: fn is called once for each topic as the broker
// starts keeping it. Say, LatestOnly for topics whose newest event is all
// that matters.
func WithTopicPolicy(fn func(topic string) TopicPolicy) BrokerOption {
	return brokerOpt(func(c *brokerConfig) { c.topicPolicy = fn })
}

// WithMaxTopics caps the distinct topics of one subscription; beyond it the handler
// answers 400 with [ErrTooManyTopics]. Default [DefaultMaxTopics].
func WithMaxTopics(n int) BrokerOption {
	return brokerOpt(func(c *brokerConfig) { c.maxTopics = max(n, 1) })
}

// WithMaxSubscribers caps the broker's subscribers; beyond it its handlers
// answer 503 with Retry-After. Zero means no cap.
func WithMaxSubscribers(n int) BrokerOption {
	return brokerOpt(func(c *brokerConfig) { c.maxSubscribers = max(n, 0) })
}

// WithMaxPerIP caps the broker's streams from one client address; beyond
// it its handlers answer 429 with Retry-After. Zero means no cap. The
// address is the connection's peer (gin's Context.RemoteIP) unless
// [WithClientIP] says otherwise.
func WithMaxPerIP(n int) BrokerOption {
	return brokerOpt(func(c *brokerConfig) { c.maxPerIP = max(n, 0) })
}

// WithClientIP sets how the broker finds a request's client address, for
// [WithMaxPerIP] and [SubscriberInfo].ClientIP. The default, the
// connection's peer, cannot be spoofed, but behind a reverse proxy it is
// the proxy's. There, tell gin which proxies to trust and use its
// Context.ClientIP:
//
//	r.SetTrustedProxies([]string{"10.0.0.0/8"}) // gin trusts every proxy by default
//	b, err := sse.NewBroker(sse.WithMaxPerIP(8), sse.WithClientIP((*gin.Context).ClientIP))
func WithClientIP(fn func(c *gin.Context) string) BrokerOption {
	return brokerOpt(func(c *brokerConfig) { c.clientIPFunc = fn })
}

// WithRetryAfter sets the Retry-After the broker's handlers send with 503
// and 429. Default 5 s.
func WithRetryAfter(d time.Duration) BrokerOption {
	return brokerOpt(func(c *brokerConfig) { c.retryAfter = d })
}

// WithTopics restricts the broker to these topics: subscribing to another
// answers 404 and publishing to another fails, both with [ErrUnknownTopic].
func WithTopics(topics ...string) BrokerOption {
	return brokerOpt(func(c *brokerConfig) {
		c.knownTopics = make(map[string]struct{}, len(topics))
		for _, t := range topics {
			c.knownTopics[t] = struct{}{}
		}
	})
}

// WithOnSubscribe sets a hook the broker calls after each subscriber is
// added (outside the broker's locks, so it may publish).
func WithOnSubscribe(fn func(SubscriberInfo)) BrokerOption {
	return brokerOpt(func(c *brokerConfig) { c.onSubscribe = fn })
}

// WithOnUnsubscribe sets a hook the broker calls after each subscriber is
// removed (outside the broker's locks, so it may publish).
func WithOnUnsubscribe(fn func(SubscriberInfo)) BrokerOption {
	return brokerOpt(func(c *brokerConfig) { c.onUnsubscribe = fn })
}

// WithObserver has the broker report what it does to o, for metrics: see
// [Observer].
func WithObserver(o Observer) BrokerOption {
	return brokerOpt(func(c *brokerConfig) { c.observer = o })
}

// WithShutdownEvent makes [Broker.Shutdown] send ev to every stream before
// ending it, for instance Event{Retry: 10 * time.Second, Comment: "restart"}
// to space out reconnects, or a named event the page shows.
func WithShutdownEvent(ev Event) BrokerOption {
	return brokerOpt(func(c *brokerConfig) { c.shutdownEvent = &ev })
}

// WithAuthorize gives a broker's handler a hook that sees the request and
// its topics before the stream starts. Returning an error refuses the
// request: with 403, or with the status of a [*StatusError] (say 401 for a
// missing login). The hook may refuse for one topic or for all.
func WithAuthorize(fn func(c *gin.Context, topics []string) error) HandlerOption {
	return handlerOpt(func(c *handlerConfig) { c.authorize = fn })
}

// WithInitialEvents gives a broker's handler the events a client starts
// with when it has nothing to resume from: a first connection, or a
// Last-Event-ID that cannot be replayed (then they follow the
// [LostEventName] signal). Send the current state here so that a fresh page
// is never blank. fn runs after the client is subscribed, so no change is
// missed between the state and the live events (one may arrive both ways;
// full-state events make that harmless). Events without an ID get the
// broker's current position as id, so a reconnect resumes after that
// state. An error refuses the request (500, or a [*StatusError]'s status).
func WithInitialEvents(fn func(c *gin.Context, topics []string) ([]Event, error)) HandlerOption {
	return handlerOpt(func(c *handlerConfig) { c.initialEvents = fn })
}

// needsIP reports whether anything reads a subscriber's client IP: the
// per-IP limit, the subscribe hooks or an observer.
func (c *brokerConfig) needsIP() bool {
	return c.maxPerIP > 0 || c.onSubscribe != nil || c.onUnsubscribe != nil || c.observer != nil
}
