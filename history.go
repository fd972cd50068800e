package sse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Errors a [Backend] returns from Replay when it cannot give a client the
// events it missed. All of them wrap [ErrEventsLost]; the broker then tells
// the client, with the [LostEventName] event and the [HeaderEventsLost]
// header, instead of skipping events silently.
var (
	// ErrEventsLost is wrapped by every error that means a client missed
	// events that cannot be replayed.
	ErrEventsLost = errors.New("sse: events were lost")
	// ErrHistoryExpired reports a Last-Event-ID older than the history
	// kept: events after it were trimmed.
	ErrHistoryExpired = fmt.Errorf("%w: Last-Event-ID is older than the history kept", ErrEventsLost)
	// ErrUnknownEventID reports a Last-Event-ID this backend never gave
	// out, such as one from before a restart of an in-memory broker.
	ErrUnknownEventID = fmt.Errorf("%w: Last-Event-ID is unknown", ErrEventsLost)
	// ErrMalformedEventID reports a Last-Event-ID that no backend could
	// have given out (control characters, or longer than 256 bytes).
	ErrMalformedEventID = fmt.Errorf("%w: Last-Event-ID is malformed", ErrEventsLost)
	// ErrDuplicateID reports a published event whose own ID is already in
	// the history.
	ErrDuplicateID = errors.New("sse: event id already in the history")
	// ErrBackendStarted reports a second Start: a backend serves one
	// broker.
	ErrBackendStarted = errors.New("sse: backend already started by another broker")
	// ErrBackendClosed reports a call on a closed backend.
	ErrBackendClosed = errors.New("sse: backend closed")
)

// Message is one published event as a [Backend] stores and carries it.
type Message struct {
	// ID is the event's id: the one it was published with, or one the
	// backend gave it.
	ID string
	// Topics are the topics it was published to.
	Topics []string
	// Body is the event's wire encoding without its "id:" line, ending
	// with the blank line. The broker encodes it once per publish; every
	// subscriber writes "id: "+ID+"\n" and Body. It is shared, read only:
	// the in-memory backend's Bodies are the bytes its streams write.
	Body []byte
	// Time is when the backend stored it. ([MemoryBackend] reads it from
	// the monotonic clock, as an offset from when it was created; while
	// events are published in quick succession, some of them share one
	// reading, taken at most about 10 ms before.)
	Time time.Time
}

// Backend stores published events and carries them to every broker that
// shares it. [NewMemoryBackend] is the default, for one process; a backend
// over a shared store (such as Redis) lets brokers in several processes
// share topics, ids and replay.
//
// Ids are ordered by the backend: every message delivered has a later id
// than the one before it.
type Backend interface {
	// Start begins delivery: every message published from now on, by
	// this process or another, is passed to deliver once (with all its
	// topics), after it is stored, in publish order, with no concurrent
	// calls. It returns the id of the last message stored before delivery
	// began, which Replay accepts as after or until ("" when the backend
	// has no such position). Start is called once, by [NewBroker].
	Start(deliver func(Message)) (position string, err error)
	// Publish stores an event for topics and returns its message. id is
	// the event's own id, or "" for the backend to give one. body is the
	// wire encoding without an "id:" line.
	Publish(ctx context.Context, topics []string, id string, body []byte) (Message, error)
	// Replay returns the stored messages on any of topics published after
	// the one with id after, up to and including the one with id until,
	// in publish order. It returns an error wrapping [ErrEventsLost] when
	// after is unknown or older than the history kept.
	Replay(ctx context.Context, topics []string, after, until string) ([]Message, error)
	// Close stops delivery and releases the backend.
	Close() error
}

// IDComparer is implemented by a [Backend] whose ids are ordered across
// processes (as Redis stream ids are) and whose delivery to a process may
// lag behind what another process already sent a client. CompareIDs
// returns -1, 0 or +1 as a is before, equal to or after b. The broker uses
// it when a client reconnects with an id its process has not delivered
// yet, to skip those events instead of sending them twice.
type IDComparer interface {
	CompareIDs(a, b string) (int, error)
}

// MemoryBackend is the in-memory [Backend]: a history bounded by count,
// age and bytes, for one broker. Ids it gives out have the
// form "<epoch>-<n>", where epoch is fixed when the backend is created, so
// that an id from before a restart is recognised as unknown instead of
// being confused with a new event.
type MemoryBackend struct {
	mu       sync.Mutex
	deliver  func(*frame)
	epoch    string
	seq      uint64
	next     []byte       // the id of seq, as text, counted up in place
	nextLen  atomic.Int32 // len(next), read without the lock
	log      []entry      // ring: log[head] is the oldest of n entries, the one with seq seq-n+1
	head, n  int
	bytes    int
	index    map[string]uint64 // own id -> seq of the entries kept that have one
	maxCount int
	maxAge   time.Duration
	maxBytes int
	closed   bool
	start    time.Time        // frames' times are offsets from it
	now      func() time.Time // a clock for tests; nil: the monotonic clock

	// A clock reading is shared by publishes in quick succession (see
	// stampLocked), when the age limit is coarse enough for it.
	shareStamps bool
	stamp       time.Duration // the last reading
	reuse       int           // publishes that may still take stamp
	expire      *time.Timer   // ends the reuse of stamp
}

// Defaults of the in-memory history.
const (
	DefaultHistoryCount = 1000
	DefaultHistoryAge   = time.Hour
	DefaultHistoryBytes = 16 << 20
)

// NewMemoryBackend returns an in-memory backend keeping at most count
// events, none older than age and at most bytes of encoded events. A zero
// limit means none (but at least one limit should be set: the history is
// the broker's only store). An age of a minute or more is kept to within
// about 10 ms: events published in quick succession share one reading of
// the clock.
func NewMemoryBackend(count int, age time.Duration, bytes int) *MemoryBackend {
	start := time.Now()
	epoch := strconv.FormatInt(start.UnixNano(), 36)
	m := &MemoryBackend{
		epoch:    epoch,
		next:     []byte(epoch + "-0"),
		index:    make(map[string]uint64),
		maxCount: max(count, 0),
		maxAge:   max(age, 0),
		maxBytes: max(bytes, 0),
		start:    start,
		// With no age limit or one of a minute or more, a time off by a
		// few milliseconds trims nothing noticeably early or late.
		shareStamps: age <= 0 || age >= time.Minute,
	}
	m.nextLen.Store(int32(len(m.next)))
	return m
}

// idRoom returns the room a broker leaves in front of an event's encoding
// for the id this backend will give it: the length of the last id given
// out, plus one for a carry. Should more digits appear meanwhile, the id
// does not fit and publishFramed copies the event instead.
func (m *MemoryBackend) idRoom() int { return int(m.nextLen.Load()) + 1 }

// clock returns the time as an offset from m.start. Reading only the
// monotonic clock costs less than time.Now, once per publish.
func (m *MemoryBackend) clock() time.Duration {
	if m.now != nil {
		return m.now().Sub(m.start)
	}
	return time.Since(m.start)
}

// Limits on sharing one clock reading between publishes: reading the
// clock costs up to a tenth of a publish on some machines.
const (
	stampReuse  = 64                    // publishes per reading, at most
	stampExpiry = 10 * time.Millisecond // how long a reading is shared, about
)

// stampLocked returns the time to store a new entry with: a fresh reading
// of the clock, or one taken at most stampReuse publishes and about
// stampExpiry ago. Times stored stay in order. m.mu is held.
func (m *MemoryBackend) stampLocked() time.Duration {
	if m.reuse > 0 {
		m.reuse--
		return m.stamp
	}
	m.stamp = m.clock()
	if m.shareStamps {
		m.reuse = stampReuse - 1
		if m.expire == nil {
			m.expire = time.AfterFunc(stampExpiry, m.expireStamp)
		} else {
			m.expire.Reset(stampExpiry)
		}
	}
	return m.stamp
}

// expireStamp makes the next publish read the clock.
func (m *MemoryBackend) expireStamp() {
	m.mu.Lock()
	m.reuse = 0
	m.mu.Unlock()
}

// entry is one event of the history. What trimming needs is kept here, so
// that it does not read the old frames it drops.
type entry struct {
	f       *frame
	at      time.Duration // when stored, from the backend's start
	size    int           // the event's encoded length, with its id but not "id: \n"
	indexed bool          // the event has its own id, in the index
}

// message returns the history entry e as a Message.
func (m *MemoryBackend) message(e entry) Message {
	return Message{ID: e.f.ownedID(), Topics: e.f.topics(), Body: e.f.body(), Time: m.start.Add(e.at)}
}

func (m *MemoryBackend) id(seq uint64) string {
	var buf [40]byte
	b := append(append(buf[:0], m.epoch...), '-')
	return string(strconv.AppendUint(b, seq, 10))
}

// incDecimal adds one to the decimal number at the end of b (after the
// last '-').
func incDecimal(b []byte) []byte {
	i := len(b) - 1
	for ; i >= 0 && b[i] != '-'; i-- {
		if b[i] != '9' {
			b[i]++
			return b
		}
		b[i] = '0'
	}
	// It was all nines, now all zeros: one more digit.
	b[i+1] = '1'
	return append(b, '0')
}

// ownID reports whether id has the form of the ids this backend gives out.
func (m *MemoryBackend) ownID(id string) bool {
	return len(id) > len(m.epoch) && id[len(m.epoch)] == '-' && id[:len(m.epoch)] == m.epoch
}

// Start implements [Backend].
func (m *MemoryBackend) Start(deliver func(Message)) (string, error) {
	// The frame delivered is the newest entry.
	return m.startFramed(func(*frame) { deliver(m.message(*m.at(m.n - 1))) })
}

// startFramed is Start for a broker in this package, which takes the
// frames as they are.
func (m *MemoryBackend) startFramed(deliver func(*frame)) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return "", ErrBackendClosed
	}
	if m.deliver != nil {
		return "", ErrBackendStarted
	}
	m.deliver = deliver
	return m.id(m.seq), nil
}

// Publish implements [Backend]. Delivery happens before it returns.
func (m *MemoryBackend) Publish(_ context.Context, topics []string, id string, body []byte) (Message, error) {
	f := new(frame)
	f.setTopics("", topics)
	e, err := m.publishFramed(f, id, body, 0)
	if err != nil {
		return Message{}, err
	}
	return m.message(e), nil
}

// publishFramed publishes the body buf[room:] as the frame f (its topics
// set by the caller): it fills in f's id and wire encoding, keeps f in the
// history and returns the history's entry for it. When the
// "id:" line fits in the room in front of the body it is written there,
// and the frame's wire encoding is that part of buf: one buffer per
// publish, shared by the history and every subscriber. An id this backend
// gives out is a string over those bytes, which are never written again.
func (m *MemoryBackend) publishFramed(f *frame, id string, buf []byte, room int) (entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return entry{}, ErrBackendClosed
	}
	if id != "" {
		if _, dup := m.index[id]; dup || m.ownID(id) {
			return entry{}, fmt.Errorf("%w: %q", ErrDuplicateID, id)
		}
	}
	m.seq++
	m.next = incDecimal(m.next)
	if n := int32(len(m.next)); n != m.nextLen.Load() {
		m.nextLen.Store(n)
	}
	own := id == ""
	if own {
		// A view of m.next, until it is copied into the wire below.
		id = unsafe.String(unsafe.SliceData(m.next), len(m.next))
	}
	end := len(buf) // slices are capped at end, so that an append copies
	if n := len("id: \n") + len(id); n <= room {
		w := buf[room-n : end : end]
		copy(w, "id: ")
		copy(w[len("id: "):], id)
		w[n-1] = '\n'
		f.wire = w
	} else {
		f.wire = appendIDLine(make([]byte, 0, n+end-room), id, buf[room:])
	}
	if own {
		f.id = unsafe.String(&f.wire[len("id: ")], len(id))
	} else {
		f.id = id
	}
	e := entry{f: f, at: m.stampLocked(), size: len(f.wire) - len("id: \n"), indexed: !own}
	m.push(e)
	if m.deliver != nil {
		m.deliver(f)
	}
	return e, nil
}

// at returns the i-th oldest entry of the ring, whose length is a power
// of two.
func (m *MemoryBackend) at(i int) *entry {
	return &m.log[(m.head+i)&(len(m.log)-1)]
}

func (m *MemoryBackend) push(e entry) {
	if m.n == len(m.log) {
		grown := make([]entry, max(2*len(m.log), 64)) // a power of two
		for i := range m.n {
			grown[i] = *m.at(i)
		}
		m.log, m.head = grown, 0
	}
	*m.at(m.n) = e
	m.n++
	m.bytes += e.size
	if e.indexed {
		m.index[e.f.id] = m.seq
	}
	m.trim(e.at)
}

// trim drops the oldest entries beyond the limits; now is m.clock().
func (m *MemoryBackend) trim(now time.Duration) {
	oldest := now - m.maxAge
	for m.n > 0 {
		e := &m.log[m.head]
		// The newest entry stays whatever its age or size: it is the
		// resume point of every client that is up to date.
		over := (m.maxCount > 0 && m.n > m.maxCount) ||
			(m.n > 1 && m.maxBytes > 0 && m.bytes > m.maxBytes) ||
			(m.n > 1 && m.maxAge > 0 && e.at < oldest)
		if !over {
			return
		}
		m.bytes -= e.size
		if e.indexed {
			delete(m.index, e.f.id)
		}
		*e = entry{}
		m.head = (m.head + 1) & (len(m.log) - 1)
		m.n--
	}
}

// seqOf returns the sequence number of id: an id in the history, or one of
// this backend's own ids.
func (m *MemoryBackend) seqOf(id string) (uint64, error) {
	if seq, ok := m.index[id]; ok {
		return seq, nil
	}
	epoch, n, ok := strings.Cut(id, "-")
	if ok && epoch == m.epoch {
		if seq, err := strconv.ParseUint(n, 10, 64); err == nil && seq <= m.seq {
			return seq, nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrUnknownEventID, id)
}

// Replay implements [Backend].
func (m *MemoryBackend) Replay(_ context.Context, topics []string, after, until string) ([]Message, error) {
	return replay(m, topics, after, until, m.message)
}

// replayFrames is Replay for a broker in this package, which writes the
// frames as they are.
func (m *MemoryBackend) replayFrames(topics []string, after, until string) ([]*frame, error) {
	return replay(m, topics, after, until, func(e entry) *frame { return e.f })
}

// replay returns, in order, each entry of m's history after after, up to
// until, published to one of topics, as conv makes it.
func replay[T any](m *MemoryBackend, topics []string, after, until string, conv func(entry) T) ([]T, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrBackendClosed
	}
	m.trim(m.clock())
	from, err := m.seqOf(after)
	if err != nil {
		return nil, err
	}
	to, err := m.seqOf(until)
	if err != nil {
		return nil, err
	}
	first := m.seq - uint64(m.n) + 1 // seq of m.log[m.head]
	if from+1 < first {
		return nil, fmt.Errorf("%w: %q", ErrHistoryExpired, after)
	}
	if to <= from {
		return []T{}, nil
	}
	out := make([]T, 0, min(to-from, 64))
	for seq := from + 1; seq <= to; seq++ {
		e := *m.at(int(seq - first))
		if slices.ContainsFunc(e.f.topics(), func(t string) bool { return slices.Contains(topics, t) }) {
			out = append(out, conv(e))
		}
	}
	return out, nil
}

// Len returns the number of events kept.
func (m *MemoryBackend) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n
}

// Close implements [Backend].
func (m *MemoryBackend) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.deliver = nil
	if m.expire != nil {
		m.expire.Stop()
	}
	return nil
}
