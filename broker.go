package sse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of the [Broker]. Test for them with [errors.Is].
var (
	// ErrBrokerClosed reports a broker that was shut down.
	ErrBrokerClosed = errors.New("sse: broker closed")
	// ErrTooManySubscribers reports that the broker holds its maximum
	// number of subscribers ([WithMaxSubscribers]); its handler answers 503
	// with Retry-After.
	ErrTooManySubscribers = errors.New("sse: too many subscribers")
	// ErrTooManyFromIP reports that the client's IP holds its maximum
	// number of streams ([WithMaxPerIP]); the handler answers 429 with
	// Retry-After.
	ErrTooManyFromIP = errors.New("sse: too many streams from this client")
	// ErrNoTopics reports a subscription or publish without topics.
	ErrNoTopics = errors.New("sse: no topics")
	// ErrTooManyTopics reports a subscription to more topics than
	// [WithMaxTopics] allows; the handler answers 400.
	ErrTooManyTopics = errors.New("sse: too many topics")
	// ErrInvalidTopic reports an empty topic, one longer than 256 bytes,
	// or one with control characters.
	ErrInvalidTopic = errors.New("sse: invalid topic")
	// ErrUnknownTopic reports a topic outside those given to [WithTopics].
	ErrUnknownTopic = errors.New("sse: unknown topic")
	// ErrReplayFailed reports that the backend could not replay the
	// events a reconnecting client missed (say, its store is down). The
	// handler then asks the client to come back later with the same
	// Last-Event-ID (a 200 stream holding only a "retry:" field), since
	// a browser's EventSource gives up for good on an error status.
	ErrReplayFailed = errors.New("sse: replay failed")
	// ErrForbidden wraps a refusal of the authorize hook ([WithAuthorize])
	// answered with 403, its default status.
	ErrForbidden = errors.New("sse: forbidden")
	// ErrUnauthorized wraps a refusal of the authorize hook answered with
	// 401 (a [*StatusError] with http.StatusUnauthorized).
	ErrUnauthorized = errors.New("sse: unauthorized")
	// ErrSubscriptionClosed is returned by [Subscription.Next] after Close.
	ErrSubscriptionClosed = errors.New("sse: subscription closed")
)

// Names of the signal a client gets when events it should have had cannot
// be sent: its Last-Event-ID is unknown, older than the history kept, or
// malformed, or it fell behind the history kept while connected.
const (
	// LostEventName is the name of the event sent in their place. Its
	// data is JSON: {"reason": "expired"|"unknown"|"malformed"|"overrun"|"data-loss",
	// "lastEventId": "<the client's last id>"}. Listen for it with
	// addEventListener("events-lost", ...) and reload the state the
	// stream would have updated. The events after it are the oldest the
	// broker still has in memory (or, with [WithInitialEvents], the
	// current state; when the backend lost them, the live ones).
	LostEventName = "events-lost"
	// HeaderEventsLost is the response header set on a stream that starts
	// with the signal, with the same reason as the event.
	HeaderEventsLost = "Sse-Events-Lost"
)

// maxIDLen is the longest id the broker gives out or accepts back.
const maxIDLen = 256

// StatusError is an error with the HTTP status the broker's handler
// answers with. Return one from an authorize hook, a [TopicsFunc] or
// [WithInitialEvents]' function to choose the status; other errors get
// 403, 400 and 500 respectively.
type StatusError struct {
	StatusCode int   // such as http.StatusUnauthorized
	Err        error // what to tell the client; nil for the status text
}

// Error returns the wrapped error's text, or the status text without one.
func (e *StatusError) Error() string {
	if e.Err == nil {
		return http.StatusText(e.StatusCode)
	}
	return e.Err.Error()
}

// Unwrap returns the wrapped error, for errors.Is and errors.As.
func (e *StatusError) Unwrap() error { return e.Err }

// SubscriberInfo describes a subscriber to the subscribe hooks. Its Topics
// are the subscriber's own: read them, copy them before changing them.
type SubscriberInfo struct {
	Topics      []string
	ClientIP    string // empty for subscriptions made with Subscribe
	LastEventID string
	// User and UserInfo are what the identify function of [WithPresence]
	// returned for the request; "" and nil for an anonymous subscriber.
	User     string
	UserInfo any
}

// Stats is a snapshot of a broker's counters.
type Stats struct {
	Subscribers    int    // current subscribers
	Topics         int    // topics with subscribers or history
	Published      uint64 // events published through this broker
	Delivered      uint64 // events written to subscribers, replayed ones included
	Lost           uint64 // events-lost signals sent
	RetainedEvents int    // events in the history (an event of several topics once for each)
	RetainedBytes  int    // the memory they take: the chunks of their encodings, and their bookkeeping
}

// Broker fans published events out to the subscribers of their topics.
//
// Each topic has a log: its recent events, each encoded once, kept within
// the limits of [WithRetention] (and [WithTopicPolicy]). A stream is a
// cursor into the logs of its topics: Publish appends and wakes the
// streams waiting for more, and each stream writes what it has not sent
// yet, in batches of one write and one flush. Publish never waits for a
// subscriber, and a slow subscriber slows nobody else: it reads from the
// log at its own pace, and gets the [LostEventName] signal if the log drops
// events it has not read yet. A client that reconnects with Last-Event-ID
// gets exactly the events it missed, while the log holds them. A stuck
// client is ended by the write timeout ([WithWriteTimeout]).
//
// A Broker is safe for concurrent use.
type Broker struct {
	cfg     brokerConfig
	backend Backend // nil: the logs are the only store
	epoch   string  // the prefix of the ids the broker gives out
	start   time.Time

	mu        sync.Mutex
	toWake    [][]*cursor // parked cursors for the waker to wake
	spare     [][]*cursor // lists the waker is done with, empty
	waking    bool        // the waker goroutine runs
	logs      map[string]*topicLog
	logTab    []*topicLog       // the logs by number (nil: free), for b.all
	freeNums  []uint32          // numbers of logTab free for new logs
	all       ring[logRef]      // every entry kept, oldest first (and some dropped: see logRef)
	now       time.Duration     // the time since start, as of the last tick
	bytes     int               // of the entries kept: their chunks and bookkeeping
	count     int               // entries kept
	index     map[string]uint64 // seq of the events kept whose id is not the broker's own
	seq       uint64
	posSeq    uint64 // seq of the newest event
	posID     string // its id, "" for one of the broker's own
	subs      map[*stream]struct{}
	perIP     map[string]int
	streams   int // subscribers that are HTTP streams
	closed    bool
	drained   chan struct{} // closed when closed and no HTTP stream is left
	janitor   *time.Timer   // drops old events while nothing is published
	pres      presence      // with WithPresence; its own lock
	janitorOn bool

	published, delivered, lost atomic.Uint64
}

// NewBroker returns a broker. By default it keeps its history in memory;
// [WithBackend] gives it another store. The settings of its streams are
// those of [Broker.Handler].
func NewBroker(opts ...BrokerOption) (*Broker, error) {
	cfg := brokerConfig{
		retentionBytes: DefaultRetentionBytes,
		retentionAge:   DefaultRetentionAge,
		maxTopics:      DefaultMaxTopics,
		retryAfter:     5 * time.Second,
	}
	for _, o := range opts {
		if o != nil {
			o.applyBroker(&cfg)
		}
	}
	now := time.Now()
	b := &Broker{
		cfg:     cfg,
		backend: cfg.backend,
		epoch:   strconv.FormatInt(now.UnixNano(), 36),
		start:   now,
		logs:    make(map[string]*topicLog),
		index:   make(map[string]uint64),
		subs:    make(map[*stream]struct{}),
		perIP:   make(map[string]int),
		drained: make(chan struct{}),
	}
	b.pres = presence{topics: map[string]*topicPresence{}, dirty: map[string]bool{}, last: map[string]string{}, written: map[string]struct{}{}}
	b.janitor = time.AfterFunc(time.Hour, b.tick)
	b.janitor.Stop()
	if b.backend != nil {
		if err := b.backend.Start(b.dispatch); err != nil {
			return nil, fmt.Errorf("sse: starting backend: %w", err)
		}
	}
	return b, nil
}

// Publish publishes ev to topic and returns its id. See [Broker.PublishTopics].
func (b *Broker) Publish(ctx context.Context, topic string, ev Event) (string, error) {
	if o := b.cfg.observer; o != nil {
		start := time.Now()
		id, err := b.publish(ctx, topic, nil, ev)
		o.Published([]string{topic}, time.Since(start), err)
		return id, err
	}
	return b.publish(ctx, topic, nil, ev)
}

// PublishTopics publishes ev once to several topics: a subscriber of more
// than one of them gets it once. The event is encoded here, once, and kept
// in the history; it gets the next id unless it has its own ID (which must
// then be unique in the history). An invalid event, topic or id returns an
// error and publishes nothing. Publish never waits for subscribers, and
// keeps nothing of ev: a []byte in ev.Data may be reused as soon as it
// returns. ctx bounds the call to a backend; without one, Publish does not
// block.
func (b *Broker) PublishTopics(ctx context.Context, topics []string, ev Event) (string, error) {
	if o := b.cfg.observer; o != nil {
		start := time.Now()
		id, err := b.publishTopics(ctx, topics, ev)
		o.Published(topics, time.Since(start), err)
		return id, err
	}
	return b.publishTopics(ctx, topics, ev)
}

func (b *Broker) publishTopics(ctx context.Context, topics []string, ev Event) (string, error) {
	switch len(topics) {
	case 0:
		return "", ErrNoTopics
	case 1:
		return b.publish(ctx, topics[0], nil, ev)
	}
	return b.publish(ctx, "", topics, ev)
}

// publish publishes ev to the topic single, or when topics is not nil to
// topics: one topic, the usual case, needs no slice.
func (b *Broker) publish(ctx context.Context, single string, topics []string, ev Event) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	var err error
	if topics == nil {
		err = b.checkTopic(single)
	} else {
		topics, err = b.checkTopics(topics, 0)
	}
	if err != nil {
		return "", err
	}
	if ev.ResetID {
		return "", fmt.Errorf("%w: ResetID is set, but the broker gives every event an id", ErrInvalidEvent)
	}
	id := ev.ID
	if len(id) > maxIDLen || containsAny(id, true) {
		return "", fmt.Errorf("%w: id %q (at most %d bytes, no CR, LF or NUL)", ErrInvalidEvent, id, maxIDLen)
	}
	ev.ID = ""
	if b.backend != nil {
		body, err := ev.AppendTo(nil)
		if err != nil {
			return "", err
		}
		if b.isClosed() {
			return "", ErrBrokerClosed
		}
		if single != "" {
			topics = []string{single}
		}
		msg, err := b.backend.Publish(ctx, topics, id, body)
		if errors.Is(err, ErrBackendClosed) && b.isClosed() {
			return "", fmt.Errorf("%w: %w", ErrBrokerClosed, err)
		}
		if err != nil {
			b.backendFailed("publish", err)
			return "", err
		}
		b.published.Add(1)
		return msg.ID, nil // delivered through dispatch
	}
	// Encoded here, outside the lock, and copied into the logs' chunks
	// under it: a small event needs no allocation of its own.
	var scratch [256]byte
	body, err := ev.AppendTo(scratch[:0])
	if err != nil {
		return "", err
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return "", ErrBrokerClosed
	}
	own := id == ""
	var m *entryMeta
	if !own {
		if _, dup := b.index[id]; dup || b.ownID(id) {
			return "", fmt.Errorf("%w: %q", ErrDuplicateID, id)
		}
		m = &entryMeta{id: id, indexed: true}
	}
	b.seq++
	if own {
		id = b.ownIDOf(b.seq)
	} else {
		b.index[id] = b.seq
	}
	if !b.janitorOn && b.cfg.retentionAge > 0 { // the clock only moves while events are kept
		b.now = time.Since(b.start)
	}
	if single != "" {
		b.appendLocked(b.logFor(single), b.seq, id, own, body, m)
	} else {
		for _, t := range topics {
			b.appendLocked(b.logFor(t), b.seq, id, own, body, m)
		}
	}
	b.appended(b.seq, id, own)
	b.published.Add(1)
	return id, nil
}

// ownIDOf returns the id the broker gives the event seq.
func (b *Broker) ownIDOf(seq uint64) string {
	var num [64]byte
	return string(strconv.AppendUint(append(append(num[:0], b.epoch...), '-'), seq, 10))
}

// dispatch adds a message the backend delivers to the log of its topic,
// if the broker serves it. The backend calls it in each topic's order.
func (b *Broker) dispatch(msg Message) {
	if o := b.cfg.observer; o != nil && msg.Lost == nil && !msg.Time.IsZero() {
		o.BackendDelivered(time.Since(msg.Time))
	}
	if msg.Lost == nil && b.cfg.presenceEvent != "" {
		b.observeAnnouncement(msg.Topic, msg.Body)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.logs[msg.Topic]
	if b.closed || l == nil || l.watching == nil {
		return // not served; while its Watch is under way, kept (see watch)
	}
	m := &entryMeta{id: msg.ID, gap: msg.Lost}
	if len(msg.Topics) > 1 {
		m.topics = msg.Topics
	}
	if msg.Lost != nil {
		// What the log holds is of a history the store no longer has:
		// streams still reading it get the signal at the gap.
		b.dropAll(l)
		l.from = msg.ID
	}
	b.seq++
	if !b.janitorOn && b.cfg.retentionAge > 0 {
		b.now = time.Since(b.start)
	}
	b.appendLocked(l, b.seq, msg.ID, false, msg.Body, m)
	b.appended(b.seq, msg.ID, false)
}

// compareIDs orders two ids of one topic of the backend; an id it cannot
// compare is before every other.
func (b *Broker) compareIDs(x, y string) int {
	c, err := b.backend.CompareIDs(x, y)
	if err != nil {
		return -1
	}
	return c
}

// ownID reports whether id has the form of the ids the broker gives out.
func (b *Broker) ownID(id string) bool {
	return len(id) > len(b.epoch) && id[len(b.epoch)] == '-' && id[:len(b.epoch)] == b.epoch
}

// seqOf returns the seq of the event with id: one in the history, or one
// of the broker's own ids.
func (b *Broker) seqOf(id string) (uint64, bool) {
	if seq, ok := b.index[id]; ok {
		return seq, true
	}
	if b.backend == nil && b.ownID(id) {
		seq, err := strconv.ParseUint(id[len(b.epoch)+1:], 10, 64)
		return seq, err == nil && seq <= b.seq && strconv.FormatUint(seq, 10) == id[len(b.epoch)+1:]
	}
	return 0, false
}

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// checkTopics validates topics and returns them without duplicates, in a
// slice of their own. max, when not zero, bounds the number of distinct
// topics.
func (b *Broker) checkTopics(topics []string, max int) ([]string, error) {
	if len(topics) == 0 {
		return nil, ErrNoTopics
	}
	out := make([]string, 0, len(topics))
	var seen map[string]struct{}
	if len(topics) > 8 {
		seen = make(map[string]struct{}, len(topics))
	}
	for _, t := range topics {
		if err := b.checkTopic(t); err != nil {
			return nil, err
		}
		if seen != nil {
			if _, dup := seen[t]; dup {
				continue
			}
			seen[t] = struct{}{}
		} else if containsString(out, t) {
			continue
		}
		out = append(out, t)
	}
	if max > 0 && len(out) > max {
		return nil, fmt.Errorf("%w: %d (at most %d)", ErrTooManyTopics, len(out), max)
	}
	return out, nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkTopic validates one topic.
func (b *Broker) checkTopic(t string) error {
	if t == "" || len(t) > 256 || hasControl(t) {
		return fmt.Errorf("%w: %q", ErrInvalidTopic, t)
	}
	if b.cfg.knownTopics != nil {
		if _, ok := b.cfg.knownTopics[t]; !ok {
			return fmt.Errorf("%w: %q", ErrUnknownTopic, t)
		}
	}
	return nil
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// LostReason returns the reason the [LostEventName] signal (and the
// [HeaderEventsLost] header) gives for err, an error wrapping
// [ErrEventsLost]: "malformed", "expired", "overrun", "data-loss", or
// "unknown" for an id the history does not hold (or any other error).
func LostReason(err error) string {
	switch {
	case errors.Is(err, ErrMalformedEventID):
		return "malformed"
	case errors.Is(err, ErrHistoryExpired):
		return "expired"
	case errors.Is(err, ErrOverrun):
		return "overrun"
	case errors.Is(err, ErrDataLoss):
		return "data-loss"
	default:
		return "unknown"
	}
}

// lostFrame is the events-lost signal, with id as its id ("" for none: the
// client keeps its last id).
func lostFrame(err error, lastID, id string) *frame {
	data, _ := json.Marshal(struct {
		Reason      string `json:"reason"`
		LastEventID string `json:"lastEventId"`
	}{LostReason(err), lastID})
	ev := Event{ID: id, Event: LostEventName, Data: data}
	wire, encErr := ev.AppendTo(nil)
	if encErr != nil { // a position a backend gave cannot hold CR or LF
		ev.ID = ""
		wire, _ = ev.AppendTo(nil)
	}
	return &frame{id: id, wire: wire}
}

// Shutdown stops accepting subscribers and publishes, ends every Go
// subscription, sends the event of [WithShutdownEvent] (if any) to every
// stream after what it has not sent yet, ends every stream, and waits until
// all of them ended or ctx is done. It then closes the backend. Wire it to
// the HTTP server so that srv.Shutdown does not wait for open streams:
//
//	srv.RegisterOnShutdown(func() { _ = broker.Shutdown(context.Background()) })
func (b *Broker) Shutdown(ctx context.Context) error {
	var left []*stream
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		b.janitor.Stop()
		b.janitorOn = false
		for s := range b.subs {
			s.closeLocked(ErrBrokerClosed)
			if s.w == nil && b.removeLocked(s) && b.leaveLocked(s, ErrBrokerClosed) { // a Go subscription leaves at once
				left = append(left, s)
			}
		}
		if b.streams == 0 {
			close(b.drained)
		}
	}
	b.mu.Unlock()
	for _, s := range left {
		b.left(s, ErrBrokerClosed)
	}
	select {
	case <-b.drained:
		b.stopPresence(ctx)
		if b.backend != nil {
			return b.backend.Close()
		}
		return nil
	case <-ctx.Done():
		// The streams left end later; the backend's presence entries of
		// this instance are no longer refreshed, and expire.
		b.pres.mu.Lock()
		b.pres.haltLocked()
		b.pres.mu.Unlock()
		return ctx.Err()
	}
}

// Stats returns a snapshot of the broker's counters.
func (b *Broker) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Stats{
		Subscribers:    len(b.subs),
		Topics:         len(b.logs),
		Published:      b.published.Load(),
		Delivered:      b.delivered.Load(),
		Lost:           b.lost.Load(),
		RetainedEvents: b.count,
		RetainedBytes:  b.bytes,
	}
}

// Subscribers returns the number of current subscribers of topic, or of all
// topics when topic is "".
func (b *Broker) Subscribers(topic string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if topic == "" {
		return len(b.subs)
	}
	if l := b.logs[topic]; l != nil {
		return l.subs
	}
	return 0
}

// retryAfterHeader is the Retry-After value, in whole seconds (at least 1).
func (b *Broker) retryAfterHeader() string {
	return strconv.FormatInt(max(int64(b.cfg.retryAfter/time.Second), 1), 10)
}

// statusOf maps a subscribe error to its HTTP status.
func (b *Broker) statusOf(err error, fallback int) int {
	var se *StatusError
	switch {
	case errors.As(err, &se) && se.StatusCode >= 400 && se.StatusCode <= 599:
		return se.StatusCode
	case errors.Is(err, ErrTooManySubscribers), errors.Is(err, ErrBrokerClosed):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrTooManyFromIP):
		return http.StatusTooManyRequests
	case errors.Is(err, ErrUnknownTopic):
		return http.StatusNotFound
	case errors.Is(err, ErrInvalidTopic), errors.Is(err, ErrNoTopics), errors.Is(err, ErrTooManyTopics):
		return http.StatusBadRequest
	}
	return fallback
}
