package sse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
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
	// ErrSlowSubscriber reports a subscriber whose queue overflowed under
	// [OverflowDisconnect]: it was disconnected and recovers by
	// reconnecting with its Last-Event-ID.
	ErrSlowSubscriber = errors.New("sse: subscriber too slow, disconnected")
	// ErrNoTopics reports a subscription or publish without topics.
	ErrNoTopics = errors.New("sse: no topics")
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
)

// Names of the signal a client gets when the events it missed cannot be
// replayed (its Last-Event-ID is unknown, older than the history kept, or
// malformed).
const (
	// LostEventName is the name of the event sent first on such a stream.
	// Its data is JSON: {"reason": "expired"|"unknown"|"malformed",
	// "lastEventId": "<the id the client sent>"}; its id is the broker's
	// current position, so the next reconnect resumes from there. Listen
	// for it with addEventListener("events-lost", ...) and reload the
	// state the stream would have updated.
	LostEventName = "events-lost"
	// HeaderEventsLost is the response header set on such a stream, with
	// the same reason as the event.
	HeaderEventsLost = "Sse-Events-Lost"
)

// OverflowPolicy says what happens to a subscriber whose queue is full.
type OverflowPolicy int

const (
	// OverflowDisconnect ends the subscriber's stream. Its client
	// reconnects with its Last-Event-ID and gets the missed events from
	// the history: nothing is lost as long as the history covers them.
	OverflowDisconnect OverflowPolicy = iota
	// OverflowDropOldest drops the oldest queued event to make room. The
	// client is not told: use it only for streams where the latest value
	// is all that matters.
	OverflowDropOldest
)

// maxIDLen is the longest id the broker gives out or accepts back.
const maxIDLen = 256

// DefaultQueueSize is the default number of events a subscriber may have
// queued before the overflow policy applies.
const DefaultQueueSize = 1024

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
}

// Stats is a snapshot of a broker's counters.
type Stats struct {
	// Subscribers is the number of current subscribers.
	Subscribers int
	// Topics is the number of current subscribers per topic.
	Topics map[string]int
	// Published is the number of events published through this broker.
	Published uint64
	// Delivered is the number of events written to subscribers,
	// replayed ones included.
	Delivered uint64
	// SlowDisconnects is the number of subscribers disconnected because
	// their queue overflowed.
	SlowDisconnects uint64
	// Dropped is the number of events dropped under OverflowDropOldest.
	Dropped uint64
}

// Broker fans published events out to the subscribers of their topics. It
// gives every event an id, keeps a history in its [Backend] so that a
// client reconnecting with Last-Event-ID gets exactly the events it missed,
// and encodes each event once for all subscribers. Each subscriber has a
// bounded queue: Publish never blocks on a subscriber, and a subscriber
// that cannot keep up is disconnected (and recovers through replay) without
// slowing the others. A Broker is safe for concurrent use.
type Broker struct {
	cfg     brokerConfig
	backend Backend
	mem     *MemoryBackend // backend, when it is the in-memory one: frames go in and out as they are

	// mu guards the fields below. With the in-memory backend it is the
	// backend's own lock, which the backend holds while it delivers a
	// publish: one lock per publish instead of two.
	mu       *sync.Mutex
	ownMu    sync.Mutex               // mu with any other backend
	topics   map[string][]*subscriber // each subscriber's place is in its slots
	hotTopic string                   // the topic published to last ("" if none) ...
	hotList  []*subscriber            // ... and its list: b.topics[hotTopic], until b.topics changes
	perIP    map[string]int
	subs     int
	position string // id of the last message dispatched
	stamp    uint64
	closed   bool
	drained  chan struct{} // closed when closed and subs == 0

	streams   int           // subscribers with a stream (Handler's), which the sweep watches
	sweeper   *time.Timer   // runs sweep while there are streams
	sweepTick time.Duration // the sweep's interval: sweepEvery, or less for short heartbeats
	sweeping  bool          // sweeper is armed

	shut                                atomic.Bool // closed, for Publish without the lock
	published, delivered, slow, dropped atomic.Uint64
}

// NewBroker returns a broker, by default with an in-memory history
// ([WithHistory]); [WithBackend] gives it another store. The settings of
// its streams are those of [Broker.Handler].
func NewBroker(opts ...BrokerOption) (*Broker, error) {
	cfg := brokerConfig{
		historyCount: DefaultHistoryCount,
		historyAge:   DefaultHistoryAge,
		historyBytes: DefaultHistoryBytes,
		queueSize:    DefaultQueueSize,
		retryAfter:   5 * time.Second,
	}
	for _, o := range opts {
		if o != nil {
			o.applyBroker(&cfg)
		}
	}
	b := &Broker{
		cfg:     cfg,
		backend: cfg.backend,
		topics:  make(map[string][]*subscriber),
		perIP:   make(map[string]int),
		drained: make(chan struct{}),
	}
	if b.backend == nil {
		b.backend = NewMemoryBackend(cfg.historyCount, cfg.historyAge, cfg.historyBytes)
	}
	var pos string
	var err error
	b.mem, _ = b.backend.(*MemoryBackend)
	if b.mem != nil {
		b.mu = &b.mem.mu
		pos, err = b.mem.startFramed(b.dispatchLocked)
	} else {
		b.mu = &b.ownMu
		pos, err = b.backend.Start(b.dispatch)
	}
	if err != nil {
		return nil, fmt.Errorf("sse: starting backend: %w", err)
	}
	b.mu.Lock()
	if b.position == "" {
		b.position = pos
	}
	b.mu.Unlock()
	return b, nil
}

// Publish publishes ev to topic and returns its id. See [Broker.PublishTopics].
func (b *Broker) Publish(topic string, ev Event) (string, error) {
	return b.publish(context.Background(), topic, nil, ev)
}

// PublishTopics publishes ev once to several topics: a subscriber of more
// than one of them gets it once. The event is encoded here, once, and
// stored in the history; it gets the next id unless it has its own ID
// (which must then be unique in the history). An invalid event, topic or
// id returns an error and publishes nothing. Publish never waits for
// subscribers, and keeps nothing of ev: a []byte in ev.Data may be reused
// as soon as it returns.
func (b *Broker) PublishTopics(ctx context.Context, topics []string, ev Event) (string, error) {
	switch len(topics) {
	case 0:
		return "", ErrNoTopics
	case 1:
		return b.publish(ctx, topics[0], nil, ev)
	}
	return b.publish(ctx, "", slices.Clone(topics), ev)
}

// publish publishes ev to topic, or when topics is not nil to topics, a
// slice the broker may keep. A single topic is kept in the frame itself.
func (b *Broker) publish(ctx context.Context, topic string, topics []string, ev Event) (string, error) {
	var err error
	if topics == nil {
		err = b.checkTopic(topic)
	} else {
		topics, err = b.checkTopics(topics)
	}
	if err != nil {
		return "", err
	}
	if ev.ResetID {
		return "", fmt.Errorf("%w: ResetID is set, but the broker gives every event an id", ErrInvalidEvent)
	}
	id := ev.ID
	ev.ID = ""
	// For the in-memory backend the event is encoded after room for its
	// "id:" line, which the backend fills in, in a buffer allocated with
	// its frame: one allocation for the whole frame.
	var f *frame
	var buf []byte
	room := 0
	if b.mem != nil {
		room = len("id: \n") + min(len(id), maxIDLen) // a longer id is refused below
		if id == "" {
			room += b.mem.idRoom()
		}
		f, buf = newFrameBuf(room + ev.sizeHint())
		f.setTopics(topic, topics)
		buf = buf[:room]
	} else {
		buf = make([]byte, 0, ev.sizeHint())
	}
	buf, err = ev.AppendTo(buf)
	if err != nil {
		return "", err
	}
	if len(id) > maxIDLen || containsAny(id, true) {
		return "", fmt.Errorf("%w: id %q (at most %d bytes, no CR, LF or NUL)", ErrInvalidEvent, id, maxIDLen)
	}
	if b.shut.Load() {
		return "", ErrBrokerClosed
	}
	if b.mem != nil {
		var e entry
		if e, err = b.mem.publishFramed(f, id, buf, room); err == nil {
			id = e.f.ownedID()
		}
	} else {
		if topics == nil {
			topics = []string{topic}
		}
		var msg Message
		if msg, err = b.backend.Publish(ctx, topics, id, buf); err == nil {
			id = msg.ID
		}
	}
	if errors.Is(err, ErrBackendClosed) && b.shut.Load() {
		return "", fmt.Errorf("%w: %w", ErrBrokerClosed, err)
	}
	if err != nil {
		return "", err
	}
	b.published.Add(1)
	return id, nil
}

// checkTopics validates topics and returns them without duplicates. It
// never writes to topics: a copy is made when there are duplicates.
func (b *Broker) checkTopics(topics []string) ([]string, error) {
	if len(topics) == 0 {
		return nil, ErrNoTopics
	}
	out := topics
	for i, t := range topics {
		if err := b.checkTopic(t); err != nil {
			return nil, err
		}
		switch {
		case len(out) < i: // deduplicating into a copy
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		case slices.Contains(topics[:i], t): // first duplicate
			out = slices.Clone(topics[:i])
		}
	}
	return out, nil
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

// frame is one message as written to clients: "id: <id>\n" and the body.
// One frame is shared by every subscriber, and the in-memory backend keeps
// its frames as its history. Its bytes are never written once it is
// published.
type frame struct {
	id    string
	wire  []byte
	topic string    // its topic, when more is nil
	more  *[]string // its topics, when it has none or more than one
}

// setTopics sets f's topics: topics, or when it is nil and topic is not
// empty just topic. A single topic takes no slice of its own, which keeps
// a frame at 64 bytes.
func (f *frame) setTopics(topic string, topics []string) {
	switch {
	case topics == nil && topic != "":
		f.topic = topic
	case topics == nil:
		f.more = &noTopics // a backend's message without topics keeps nil
	case len(topics) == 1:
		f.topic = topics[0]
	default:
		p := new([]string)
		*p = topics
		f.more = p
	}
}

// noTopics is the topics of a frame without any; it stays nil.
var noTopics []string

// topics returns f's topics. The slice is f's: do not change it.
func (f *frame) topics() []string {
	if f.more != nil {
		return *f.more
	}
	return unsafe.Slice(&f.topic, 1)
}

// ownedID returns f's id for a caller to keep. An id the in-memory backend
// gave out shares the bytes of f's wire encoding; it is copied unless that
// encoding is small, so that keeping the id keeps at most a small frame.
func (f *frame) ownedID() string {
	if len(f.wire) > 256 {
		return strings.Clone(f.id)
	}
	return f.id
}

// body returns the frame's encoding without its "id:" line.
func (f *frame) body() []byte { return f.wire[len("id: \n")+len(f.id):] }

// newFrameBuf returns a new frame and an empty buffer of capacity at least
// n. A small buffer is allocated with the frame, as one object: one
// allocation per event instead of two.
func newFrameBuf(n int) (*frame, []byte) {
	for _, c := range frameBufs {
		if n <= c.n {
			return c.alloc()
		}
	}
	return new(frame), make([]byte, 0, n)
}

// frameBufs are the buffer sizes allocated with a frame, smallest first.
// With the frame, each fills one of Go's allocation size classes
// (TestFrameBufSizeClasses checks it).
var frameBufs = [...]struct {
	n     int
	alloc func() (*frame, []byte)
}{
	{64, frameWith[[64]byte]},
	{80, frameWith[[80]byte]},
	{96, frameWith[[96]byte]},
	{112, frameWith[[112]byte]},
	{128, frameWith[[128]byte]},
	{160, frameWith[[160]byte]},
	{192, frameWith[[192]byte]},
	{256, frameWith[[256]byte]},
	{320, frameWith[[320]byte]},
	{448, frameWith[[448]byte]},
	{576, frameWith[[576]byte]},
	{960, frameWith[[960]byte]},
}

// frameWith allocates a frame and the byte array B as one object.
func frameWith[B any]() (*frame, []byte) {
	x := new(struct {
		f   frame
		buf B
	})
	return &x.f, unsafe.Slice((*byte)(unsafe.Pointer(&x.buf)), unsafe.Sizeof(x.buf))[:0]
}

func newFrame(msg Message) *frame {
	f := &frame{id: msg.ID, wire: appendIDLine(nil, msg.ID, msg.Body)}
	f.setTopics("", msg.Topics)
	return f
}

// appendIDLine appends "id: <id>\n" and body to dst.
func appendIDLine(dst []byte, id string, body []byte) []byte {
	if dst == nil {
		dst = make([]byte, 0, len("id: \n")+len(id)+len(body))
	}
	dst = append(dst, "id: "...)
	dst = append(dst, id...)
	dst = append(dst, '\n')
	return append(dst, body...)
}

// dispatch hands a message from the backend to the local subscribers of its
// topics. The backend calls it once per message, in order.
func (b *Broker) dispatch(msg Message) {
	f := newFrame(msg)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dispatchLocked(f)
}

// dispatchLocked hands f to the local subscribers of its topics. b.mu is
// held: the in-memory backend calls it with its lock, which is b.mu.
func (b *Broker) dispatchLocked(f *frame) {
	b.position = f.id
	b.stamp++
	for _, t := range f.topics() {
		for _, s := range b.subscribersOf(t) {
			if s.stamp != b.stamp {
				s.stamp = b.stamp
				s.push(b, f)
			}
		}
	}
}

// subscribersOf returns b.topics[t], without a map lookup when t is the
// topic published to last. b.mu is held.
func (b *Broker) subscribersOf(t string) []*subscriber {
	if t == b.hotTopic {
		return b.hotList
	}
	list := b.topics[t]
	b.hotTopic, b.hotList = t, list
	return list
}

// topicsChanged forgets the cached list of subscribersOf. b.mu is held.
func (b *Broker) topicsChanged() {
	b.hotTopic, b.hotList = "", nil
}

// subscriber is one stream's place in the broker.
//
// Its goroutine waits on signal alone: the broker's sweep wakes a stream
// whose client left or that is due a heartbeat, so that a stream holds
// neither a timer nor a wait on its request's context.
type subscriber struct {
	info   SubscriberInfo
	stamp  uint64        // guarded by b.mu
	slots  []slot        // its place in b.topics; guarded by b.mu
	slot1  [1]slot       // slots of a single-topic subscriber
	signal chan struct{} // wakes the reader: frames queued, kicked, or swept
	w      *Writer       // the stream, for the sweep (nil for a Subscription); guarded by b.mu

	mu     sync.Mutex
	queue  []*frame
	spare  []*frame
	skip   string     // drop frames up to this id: the client has them
	head   int32      // frames at the front of queue that were prepended
	reason kickReason // why kicked, if it was
}

// kickReason is why a subscriber was kicked: one of kickReasons, or none.
type kickReason uint8

const (
	notKicked kickReason = iota
	kickedSlow
	kickedClosed
	kickedShutdown
)

// kickReasons are the errors of the reasons, by kickReason.
var kickReasons = [...]error{nil, ErrSlowSubscriber, ErrSubscriptionClosed, ErrBrokerClosed}

func (r kickReason) err() error { return kickReasons[r] }

// push queues f without blocking. b is s's broker (passed, not kept: a
// field would cost every stream a size class).
func (s *subscriber) push(b *Broker, f *frame) {
	s.mu.Lock()
	if s.reason != notKicked || s.skipLocked(b, f) {
		s.mu.Unlock()
		return
	}
	if len(s.queue)-int(s.head) >= b.cfg.queueSize { // replayed frames do not count
		if b.cfg.overflow == OverflowDisconnect {
			s.kickLocked(kickedSlow)
			s.mu.Unlock()
			b.slow.Add(1)
			return
		}
		if s.head == 0 {
			s.queue[0] = nil
			s.queue = s.queue[1:]
		} else {
			s.queue = append(s.queue[:s.head], s.queue[s.head+1:]...)
		}
		b.dropped.Add(1)
	}
	// Only a push to an empty queue wakes the reader: one to a queue that
	// is not empty finds it woken already, since taking empties the queue.
	wake := len(s.queue) == 0
	s.queue = append(s.queue, f)
	s.mu.Unlock()
	if wake {
		s.wake()
	}
}

// wake tells the subscriber's reader that frames are queued.
func (s *subscriber) wake() {
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// prepend puts frames (replayed or initial) in front of the queue; they do
// not count against the queue's bound.
func (s *subscriber) prepend(head []*frame) {
	s.mu.Lock()
	s.queue = append(head, s.queue...)
	s.head += int32(len(head))
	s.mu.Unlock()
	s.wake()
}

// take returns the queued frames. The slice is valid until the next take;
// the caller clears it once written, so frames are not kept alive.
func (s *subscriber) take() []*frame {
	q, _ := s.drain()
	return q
}

// drain is take, and also returns why the subscriber was kicked (nil if it
// was not). Once it was kicked, nothing more is queued: the frames
// returned with the reason are its last.
func (s *subscriber) drain() ([]*frame, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue, s.spare, s.head = s.spare[:0], q, 0
	return q, s.reason.err()
}

func (s *subscriber) kickLocked(reason kickReason) {
	if s.reason == notKicked {
		s.reason = reason
		s.wake()
	}
}

// kicked returns why the subscriber was kicked, or nil.
func (s *subscriber) kicked() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason.err()
}

func (s *subscriber) kick(reason kickReason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kickLocked(reason)
}

// subscribe registers a subscriber and queues the events it missed since
// lastID. Live events published meanwhile queue behind them: registration
// and the replay's upper bound are taken under the lock that dispatch
// holds, so there is no gap and no duplicate.
//
// initial, when not nil, gives the events a client starts with when it has
// nothing to resume from (no lastID, or one that cannot be replayed).
//
// lost is why the events missed since lastID could not be replayed (an
// error wrapping ErrEventsLost), or nil.
func (b *Broker) subscribe(ctx context.Context, topics []string, lastID, ip string, initial func([]string) ([]Event, error)) (s *subscriber, lost, err error) {
	topics, err = b.checkTopics(slices.Clone(topics))
	if err != nil {
		return nil, nil, err
	}
	s = &subscriber{
		info:   SubscriberInfo{Topics: topics, ClientIP: ip, LastEventID: lastID},
		signal: make(chan struct{}, 1),
	}
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return nil, nil, ErrBrokerClosed
	case b.cfg.maxSubscribers > 0 && b.subs >= b.cfg.maxSubscribers:
		b.mu.Unlock()
		return nil, nil, ErrTooManySubscribers
	case ip != "" && b.cfg.maxPerIP > 0 && b.perIP[ip] >= b.cfg.maxPerIP:
		b.mu.Unlock()
		return nil, nil, ErrTooManyFromIP
	}
	b.subs++
	if ip != "" {
		b.perIP[ip]++
	}
	if len(topics) == 1 {
		s.slots = s.slot1[:]
	} else {
		s.slots = make([]slot, len(topics))
	}
	for i, t := range topics {
		s.slots[i] = slot{topic: t, i: len(b.topics[t])}
		b.topics[t] = append(b.topics[t], s)
	}
	b.topicsChanged()
	until := b.position
	b.mu.Unlock()

	var head []*frame
	if lastID != "" {
		if head, lost, err = b.replay(ctx, s, lastID, until); err != nil {
			b.remove(s, false)
			return nil, nil, err
		}
	}
	if initial != nil && (lastID == "" || lost != nil) {
		events, err := initial(topics)
		if err != nil {
			b.remove(s, false)
			return nil, nil, err
		}
		for _, ev := range events {
			if ev.ID == "" && !ev.ResetID {
				ev.ID = until // a reconnect resumes after the state it got
			}
			wire, err := ev.AppendTo(nil)
			if err != nil {
				b.remove(s, false)
				return nil, nil, err
			}
			head = append(head, &frame{id: ev.ID, wire: wire})
		}
	}
	if len(head) > 0 {
		s.prepend(head)
	}
	if hook := b.cfg.onSubscribe; hook != nil {
		hook(s.info)
	}
	return s, lost, nil
}

// replay returns the frames of the events missed since lastID, or the
// events-lost signal and why when they cannot be replayed.
func (b *Broker) replay(ctx context.Context, s *subscriber, lastID, until string) (head []*frame, lost, err error) {
	var msgs []Message
	if len(lastID) > maxIDLen || containsAny(lastID, true) {
		err = fmt.Errorf("%w: %q", ErrMalformedEventID, lastID)
	} else if b.ahead(lastID, until) {
		// The client has seen events this process has not delivered yet
		// (its backend reader lags behind another server's): check that
		// the id is real, then skip what it already has as it arrives.
		if _, err = b.backend.Replay(ctx, s.info.Topics, lastID, lastID); err == nil {
			s.skipThrough(b, lastID)
			return nil, nil, nil
		}
	} else if b.mem != nil {
		// The history's frames are the ones written live: no copies.
		if head, err = b.mem.replayFrames(s.info.Topics, lastID, until); err == nil {
			return head, nil, nil
		}
	} else {
		msgs, err = b.backend.Replay(ctx, s.info.Topics, lastID, until)
	}
	switch {
	case errors.Is(err, ErrEventsLost):
		return []*frame{lostFrame(err, lastID, until)}, err, nil
	case err != nil:
		return nil, nil, fmt.Errorf("%w: %w", ErrReplayFailed, err)
	}
	head = make([]*frame, len(msgs))
	for i, m := range msgs {
		head[i] = newFrame(m)
	}
	return head, nil, nil
}

// ahead reports whether id comes after position, for backends that can
// order their ids.
func (b *Broker) ahead(id, position string) bool {
	cmp, ok := b.backend.(IDComparer)
	if !ok || position == "" {
		return false
	}
	c, err := cmp.CompareIDs(id, position)
	return err == nil && c > 0
}

// skipThrough drops the frames up to and including id, queued now or
// later: the client already has them.
func (s *subscriber) skipThrough(b *Broker, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.skip = id
	kept := s.queue[:0]
	for _, f := range s.queue {
		if !s.skipLocked(b, f) {
			kept = append(kept, f)
		}
	}
	clear(s.queue[len(kept):])
	s.queue = kept
}

// skipLocked reports whether f is one the client already has.
func (s *subscriber) skipLocked(b *Broker, f *frame) bool {
	if s.skip == "" {
		return false
	}
	if c, err := b.backend.(IDComparer).CompareIDs(f.id, s.skip); err == nil && c > 0 {
		s.skip = "" // past the client's position: deliver from here on
		return false
	}
	return true
}

// lostReason names the reason of an ErrEventsLost error.
func lostReason(err error) string {
	switch {
	case errors.Is(err, ErrMalformedEventID):
		return "malformed"
	case errors.Is(err, ErrHistoryExpired):
		return "expired"
	default:
		return "unknown"
	}
}

// lostFrame is the events-lost signal. Its id is the broker's position, so
// the client's next reconnect resumes from here.
func lostFrame(err error, lastID, position string) *frame {
	data, _ := json.Marshal(struct {
		Reason      string `json:"reason"`
		LastEventID string `json:"lastEventId"`
	}{lostReason(err), lastID})
	ev := Event{ID: position, Event: LostEventName, Data: data}
	wire, encErr := ev.AppendTo(nil)
	if encErr != nil { // a position a backend gave cannot hold CR or LF
		ev.ID = ""
		wire, _ = ev.AppendTo(nil)
	}
	return &frame{id: position, wire: wire}
}

// remove takes s out of the broker, calling the unsubscribe hook when
// notify is set.
func (b *Broker) remove(s *subscriber, notify bool) {
	s.kick(kickedClosed)
	b.mu.Lock()
	for _, sl := range s.slots {
		b.unlist(sl)
	}
	b.subs--
	if s.w != nil {
		b.streams--
	}
	if ip := s.info.ClientIP; ip != "" {
		if b.perIP[ip]--; b.perIP[ip] <= 0 {
			delete(b.perIP, ip)
		}
	}
	if b.closed && b.subs == 0 {
		closeOnce(b.drained)
	}
	b.mu.Unlock()
	if hook := b.cfg.onUnsubscribe; notify && hook != nil {
		hook(s.info)
	}
}

// slot is a subscriber's place in the list of one of its topics. The
// broker keeps its own copy of the topic: SubscriberInfo.Topics is the
// hooks' to read.
type slot struct {
	topic string
	i     int
}

// unlist takes the subscriber at sl out of its topic's list, moving the
// last one into its place. b.mu must be held.
func (b *Broker) unlist(sl slot) {
	b.topicsChanged()
	list := b.topics[sl.topic]
	last := len(list) - 1
	if sl.i != last {
		moved := list[last]
		list[sl.i] = moved
		for k := range moved.slots {
			if moved.slots[k].topic == sl.topic {
				moved.slots[k].i = sl.i
				break
			}
		}
	}
	list[last] = nil
	switch {
	case last == 0:
		delete(b.topics, sl.topic)
	case last < cap(list)/4 && cap(list) > 64:
		// Give back what a crowd that left had grown.
		b.topics[sl.topic] = slices.Clone(list[:last])
	default:
		b.topics[sl.topic] = list[:last]
	}
}

// ErrSubscriptionClosed is returned by [Subscription.Next] after Close.
var ErrSubscriptionClosed = errors.New("sse: subscription closed")

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// Shutdown stops accepting subscribers and publishes, sends the event of
// [WithShutdownEvent] (if any) to every stream after what is already queued
// for it, ends every stream, and waits until all of them ended or ctx is
// done. It then closes the backend. Wire it to the HTTP server so that
// srv.Shutdown does not wait for open streams:
//
//	srv.RegisterOnShutdown(func() { _ = broker.Shutdown(context.Background()) })
func (b *Broker) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		b.shut.Store(true)
		if b.subs == 0 {
			closeOnce(b.drained)
		}
		for _, list := range b.topics {
			for _, s := range list {
				s.kick(kickedShutdown)
			}
		}
		if b.sweeping {
			b.sweeper.Stop() // kicked streams need no sweep to end
			b.sweeping = false
		}
	}
	b.mu.Unlock()
	select {
	case <-b.drained:
		return b.backend.Close()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns a snapshot of the broker's counters.
func (b *Broker) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := Stats{
		Subscribers:     b.subs,
		Topics:          make(map[string]int, len(b.topics)),
		Published:       b.published.Load(),
		Delivered:       b.delivered.Load(),
		SlowDisconnects: b.slow.Load(),
		Dropped:         b.dropped.Load(),
	}
	for t, list := range b.topics {
		st.Topics[t] = len(list)
	}
	return st
}

// Subscribers returns the number of current subscribers of topic, or of all
// topics when topic is "".
func (b *Broker) Subscribers(topic string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if topic == "" {
		return b.subs
	}
	return len(b.topics[topic])
}

// sweepEvery is how often the broker looks at its streams while it has
// some: a client that left is noticed within this long, and a heartbeat
// goes out within this long of being due. One timer for all streams costs
// far less than a ticker and a wait on its request's context in each.
const sweepEvery = 100 * time.Millisecond

// minSweep bounds the sweep's interval from below, whatever the heartbeat.
const minSweep = 10 * time.Millisecond

// attach makes w the stream of s, which the sweep then watches. The sweep
// runs at sweepEvery, or at a quarter of the shortest heartbeat of the
// streams attached so far when that is shorter.
func (b *Broker) attach(s *subscriber, w *Writer) {
	tick := sweepEvery
	if hb := w.cfg.heartbeat; hb > 0 {
		tick = min(tick, max(hb/4, minSweep))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s.w = w
	b.streams++
	if b.sweepTick == 0 || tick < b.sweepTick {
		b.sweepTick = tick
	}
	if b.sweeping || b.closed {
		return
	}
	b.sweeping = true
	if b.sweeper == nil {
		b.sweeper = time.AfterFunc(b.sweepTick, b.sweep)
	} else {
		b.sweeper.Reset(b.sweepTick)
	}
}

// sweep wakes the streams whose client left (their request's context
// ended) and those idle for a heartbeat, then runs again in sweepTick
// while there are streams.
func (b *Broker) sweep() {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.sweeping {
		return // stopped by Shutdown as it fired
	}
	b.stamp++
	for _, list := range b.topics {
		for _, s := range list {
			if s.w != nil && s.stamp != b.stamp {
				s.stamp = b.stamp
				if s.w.due(now) {
					s.wake()
				}
			}
		}
	}
	if b.streams > 0 && !b.closed {
		b.sweeper.Reset(b.sweepTick)
	} else {
		b.sweeping = false
	}
}

// serve writes s's events to w until the client leaves, the subscriber is
// kicked (slow, or shutdown) or a write fails. Whatever is queued goes out
// in one write and one flush. It waits on s.signal alone: pushes, kicks
// and the sweep wake it.
func (b *Broker) serve(ctx context.Context, w *Writer, s *subscriber) error {
	heartbeat := w.cfg.heartbeat
	d := delivery{b: b, w: w, s: s}
	for {
		<-s.signal
		if ctx.Err() != nil {
			return clientGone(ctx)
		}
		if w.stopped() {
			return errStopped
		}
		// What was queued before a kick still goes out: a slow client
		// makes progress, and nothing published before a shutdown is
		// held back. A kick during the write wakes the loop again.
		wrote, reason, err := d.flush()
		switch {
		case err != nil:
			return err
		case reason != nil:
			if errors.Is(reason, ErrBrokerClosed) {
				if ev := b.cfg.shutdownEvent; ev != nil {
					if err := w.Send(*ev); err != nil {
						return err
					}
				}
			}
			return reason
		case !wrote && heartbeat > 0 && w.idle(time.Now()) >= heartbeat:
			if cap(d.buf) > maxIdleBuf { // idle: a backlog's buffer goes
				d.buf = nil
			}
			if err := w.Comment("heartbeat"); err != nil {
				return err
			}
		}
	}
}

// errStopped ends a stream whose done channel ([WithDone]) closed.
var errStopped = errors.New("sse: stream stopped by its done channel")

// delivery writes a subscriber's queued frames to its stream.
type delivery struct {
	b     *Broker
	w     *Writer
	s     *subscriber
	buf   []byte
	bigAt int64 // when a write last needed a quarter of buf or more, in unix ns
}

// maxIdleBuf is the largest write buffer a stream keeps when its backlogs
// no longer need it.
const maxIdleBuf = 64 << 10

// flush writes whatever is queued in one write and one flush, and returns
// whether there was anything, and why the subscriber was kicked (nil if it
// was not) when it took the frames: those were its last.
func (d *delivery) flush() (wrote bool, kicked, err error) {
	frames, kicked := d.s.drain()
	if len(frames) == 0 {
		return false, kicked, nil
	}
	var p []byte
	d.buf = d.buf[:0]
	if len(frames) == 1 {
		p = frames[0].wire
	} else {
		n := 0
		for _, f := range frames {
			n += len(f.wire)
		}
		if n > cap(d.buf) { // grown once, instead of step by step
			d.buf = make([]byte, 0, max(n, 2*cap(d.buf)))
		}
		for _, f := range frames {
			d.buf = append(d.buf, f.wire...)
		}
		p = d.buf
	}
	n := len(frames)
	err = d.w.writeFrames(p, n)
	clear(frames) // written frames are not kept alive
	d.shrink(d.w.lastWrite.Load())
	if err != nil {
		return true, kicked, err
	}
	d.b.delivered.Add(uint64(n))
	return true, kicked, nil
}

// shrink drops a buffer grown for large backlogs once no write has needed
// a quarter of it for a second (now is the time of the last write): a
// stream that keeps having large backlogs now and then keeps its buffer
// instead of growing a new one each time, and a spike does not pin memory
// for long (an idle stream drops it at its next heartbeat).
func (d *delivery) shrink(now int64) {
	switch {
	case cap(d.buf) <= maxIdleBuf:
	case len(d.buf) >= cap(d.buf)/4:
		d.bigAt = now
	case now-d.bigAt >= int64(time.Second):
		d.buf = nil
	}
}

// retryAfter is the Retry-After value, in whole seconds (at least 1).
func (b *Broker) retryAfter() string {
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
	case errors.Is(err, ErrInvalidTopic), errors.Is(err, ErrNoTopics):
		return http.StatusBadRequest
	}
	return fallback
}
