package sse

import (
	"reflect"
	"sort"
	"time"
)

// Defaults of the broker's history.
const (
	// DefaultRetentionBytes bounds the encoded events a broker keeps, over
	// all its topics.
	DefaultRetentionBytes = 64 << 20
	// DefaultRetentionAge bounds the age of the events a broker keeps.
	DefaultRetentionAge = 5 * time.Minute
	// DefaultMaxTopics is the most topics one subscription may have.
	DefaultMaxTopics = 64
)

// TopicPolicy sets limits of one topic's history, besides the broker-wide
// ones of [WithRetention]. See [WithTopicPolicy].
type TopicPolicy struct {
	// MaxEvents keeps at most this many of the topic's events; zero means
	// no limit of its own. A stream that falls further behind gets the
	// [LostEventName] signal.
	MaxEvents int
	// LatestOnly keeps only the topic's newest event, for topics whose
	// latest value is all that matters (a counter, a state). A stream
	// that falls behind skips to it without a loss signal.
	LatestOnly bool
}

// frame is one event as written to clients: "id: <id>\n" and its body,
// encoded once and shared, read only, by every log and stream that holds
// it.
type frame struct {
	seq    uint64 // the broker's order of events
	id     string
	wire   []byte
	topics []string
	at     time.Duration // when appended, from the broker's start
	slot   uint64        // its index in b.all, over the broker's whole history
	refs   int32         // the topic logs that hold it
	own    bool          // the id is one the broker gave out
	gap    error         // not an event: the backend lost the events before it (see Message.Lost)
}

// size returns the memory f takes in the history: its encoding, its id,
// the frame and its places in the history's rings.
func (f *frame) size() int {
	return cap(f.wire) + len(f.id) + frameOverhead + 8*len(f.topics)
}

// frameOverhead is the size of a frame, its place in b.all and the room
// left in front of its encoding for the id.
var frameOverhead = int(reflect.TypeFor[frame]().Size()) + 8 + 24

// ring is a queue of frames over a circular buffer whose length is a power
// of two: pushing and popping move no other element.
type ring struct {
	buf     []*frame
	head, n int
}

func (r *ring) at(i int) *frame { return r.buf[(r.head+i)&(len(r.buf)-1)] }

func (r *ring) set(i int, f *frame) { r.buf[(r.head+i)&(len(r.buf)-1)] = f }

func (r *ring) push(f *frame) {
	if r.n == len(r.buf) {
		r.resize(max(2*len(r.buf), 8))
	}
	r.set(r.n, f)
	r.n++
}

// pop drops the oldest frame, and gives back room a burst grew.
func (r *ring) pop() {
	r.buf[r.head] = nil
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	if len(r.buf) > 64 && r.n < len(r.buf)/8 {
		r.resize(len(r.buf) / 4)
	}
}

func (r *ring) resize(size int) {
	buf := make([]*frame, size)
	for i := range r.n {
		buf[i] = r.at(i)
	}
	r.buf, r.head = buf, 0
}

// topicLog is the history of one topic: its frames in order, which every
// stream on the topic reads through a cursor.
type topicLog struct {
	name        string
	self        []string // name alone: the topics of its frames that have no other
	frames      ring
	base        uint64 // index, over the topic's whole history, of its oldest frame kept
	lastDropped uint64 // seq of the newest frame dropped, 0 for none
	policy      TopicPolicy
	subs        int       // subscribers
	waiters     []*cursor // parked cursors, woken by the next append
	gen         uint64    // wakes so far: a cursor parked in an earlier one is no longer in waiters

	// With a backend: the log holds every event of the topic after from,
	// once watched (watching is done).
	from     string
	watching *watchCall // the Watch under way, or done
}

// watchCall is a call of Backend.Watch, which the other subscribers of its
// topic wait for.
type watchCall struct {
	done chan struct{}
	err  error
}

// end returns the index after the newest frame.
func (l *topicLog) end() uint64 { return l.base + uint64(l.frames.n) }

// at returns the frame at index i, which is kept.
func (l *topicLog) at(i uint64) *frame { return l.frames.at(int(i - l.base)) }

// len returns the number of frames kept.
func (l *topicLog) len() int { return l.frames.n }

// after returns the index of the first frame kept with a seq after seq.
func (l *topicLog) after(seq uint64) uint64 {
	return l.base + uint64(sort.Search(l.frames.n, func(i int) bool { return l.frames.at(i).seq > seq }))
}

// endID returns the id of the newest frame, or from without frames.
func (l *topicLog) endID() string {
	if l.frames.n == 0 {
		return l.from
	}
	return l.at(l.end() - 1).id
}

// search returns the index of the first frame with an id after id, and
// whether id is from or the id of the frame before it: a position of the
// topic's history the log knows. Only with a backend.
func (b *Broker) search(l *topicLog, id string) (uint64, bool) {
	i := sort.Search(l.frames.n, func(i int) bool { return b.compareIDs(l.frames.at(i).id, id) > 0 })
	if i == 0 {
		return l.base, id == l.from
	}
	return l.base + uint64(i), l.frames.at(i-1).id == id
}

// dropAll drops every frame of l.
func (b *Broker) dropAll(l *topicLog) {
	for l.len() > 0 {
		b.dropOldest(l)
	}
}

// dropOldest drops the oldest frame of l.
func (b *Broker) dropOldest(l *topicLog) {
	old := l.at(l.base)
	if old.refs--; old.refs == 0 {
		b.forget(old)
	}
	l.dropped()
}

// push appends f to l, and drops the frames beyond l's policy.
func (b *Broker) push(l *topicLog, f *frame) {
	l.frames.push(f)
	f.refs++
	limit := l.policy.MaxEvents
	if l.policy.LatestOnly {
		limit = 1
	}
	for limit > 0 && l.len() > limit {
		b.dropOldest(l)
	}
}

// dropped takes the oldest frame off l.
func (l *topicLog) dropped() {
	l.lastDropped = l.at(l.base).seq
	l.from = l.at(l.base).id
	l.frames.pop()
	l.base++
}

// park adds c to the waiters of its log, unless it is there already.
func (c *cursor) park() {
	l := c.log
	if c.parked && c.gen == l.gen {
		return
	}
	c.parked, c.gen, c.slot = true, l.gen, len(l.waiters)
	l.waiters = append(l.waiters, c)
}

// unpark takes c off the waiters of its log, if it is there. The list
// gives back the room a crowd that left grew it to.
func (c *cursor) unpark() {
	l := c.log
	if c.parked && c.gen == l.gen {
		last := len(l.waiters) - 1
		moved := l.waiters[last]
		l.waiters[c.slot], moved.slot = moved, c.slot
		l.waiters[last] = nil
		l.waiters = l.waiters[:last]
		if cap(l.waiters) > 64 && len(l.waiters) < cap(l.waiters)/4 {
			l.waiters = append(make([]*cursor, 0, 2*len(l.waiters)), l.waiters...)
		}
	}
	c.parked = false
}

// wakeInline is the most cursors wakeLocked wakes itself, under the lock;
// maxSpareLists bounds the lists of woken cursors kept for reuse.
const (
	wakeInline    = 8
	maxSpareLists = 64
)

// wakeLocked wakes the cursors parked in l. It holds the lock for a time
// that does not grow with them: a few it wakes at once, more it hands to
// the broker's waker goroutine, which wakes their streams after the lock.
// (Woken under the lock, 5,000 parked streams held it 2 to 5 ms per
// publish, and their streams then queued for it. Waking at once the few
// of a topic with one or two streams is what keeps a single stream fed as
// fast as possible, bench/'s scenario (d), at 0.49 to 0.53× of bare's
// events/s; handing even those over gave 0.40×.)
func (b *Broker) wakeLocked(l *topicLog) {
	if len(l.waiters) == 0 {
		return
	}
	l.gen++ // its cursors are no longer parked
	if len(l.waiters) <= wakeInline {
		for i, c := range l.waiters {
			c.s.notify()
			l.waiters[i] = nil
		}
		l.waiters = l.waiters[:0]
		return
	}
	b.toWake = append(b.toWake, l.waiters)
	l.waiters = nil
	if n := len(b.spare); n > 0 { // a list the waker is done with
		l.waiters, b.spare = b.spare[n-1], b.spare[:n-1]
	}
	if !b.waking {
		b.waking = true
		go b.waker()
	}
}

// waker wakes the streams of the cursors handed to it, until there are no
// more.
func (b *Broker) waker() {
	for {
		b.mu.Lock()
		lists := b.toWake
		b.toWake = nil
		if len(lists) == 0 {
			b.waking = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		for _, cs := range lists {
			for i, c := range cs {
				c.s.notify() // s is set once, before c is ever parked
				cs[i] = nil
			}
		}
		// The lists go back for the logs to park in again: each publish
		// would otherwise grow a new one. (Measured with
		// BenchmarkBrokerPublish, 1,000 subscribers: 17.9 KB and 15
		// allocations per publish without, 0.5 KB and 4 with; 92-103 µs
		// against 77-88 µs.)
		b.mu.Lock()
		for _, cs := range lists {
			if len(b.spare) < maxSpareLists {
				b.spare = append(b.spare, cs[:0])
			}
		}
		b.mu.Unlock()
	}
}

// logFor returns the log of topic t, made on first use. b.mu is held.
func (b *Broker) logFor(t string) *topicLog {
	l := b.logs[t]
	if l == nil {
		l = &topicLog{name: t, self: []string{t}, policy: b.cfg.policy(t)}
		b.logs[t] = l
	}
	return l
}

// appendLocked adds f to the history and wakes the streams parked on its
// topics; l, when not nil, is the log of its only topic. b.mu is held.
func (b *Broker) appendLocked(f *frame, l *topicLog) {
	f.at = b.now
	f.slot = b.allBase + uint64(b.all.n)
	b.position = f.id
	b.all.push(f)
	b.bytes += f.size()
	b.count++
	if !f.own && b.backend == nil {
		b.index[f.id] = f.seq
	}
	if l != nil {
		b.push(l, f)
		b.wakeLocked(l)
	} else {
		for _, t := range f.topics {
			l := b.logFor(t)
			b.push(l, f)
			b.wakeLocked(l)
		}
	}
	b.trimLocked()
	if !b.janitorOn && b.cfg.retentionAge > 0 {
		b.janitorOn = true
		b.janitor.Reset(b.janitorEvery())
	}
}

// trimLocked drops the oldest events beyond the broker's limits. The
// newest event stays whatever its size or age: it is the resume point of
// every client that is up to date.
func (b *Broker) trimLocked() {
	for b.all.n > 0 {
		f := b.all.at(0)
		if f != nil {
			over := b.count > 1 && ((b.cfg.retentionBytes > 0 && b.bytes > b.cfg.retentionBytes) ||
				(b.cfg.retentionAge > 0 && b.now-f.at > b.cfg.retentionAge))
			if !over {
				return
			}
			// The oldest frame kept is at the head of each of its logs.
			for _, t := range f.topics {
				if l := b.logs[t]; l != nil && l.len() > 0 && l.at(l.base) == f {
					l.dropped()
					b.freeIfUnused(l)
				}
			}
			b.forget(f)
		}
		b.all.pop()
		b.allBase++
	}
}

// forget drops f from the history, once no log holds it.
func (b *Broker) forget(f *frame) {
	b.all.set(int(f.slot-b.allBase), nil)
	b.bytes -= f.size()
	b.count--
	if !f.own && b.backend == nil {
		delete(b.index, f.id)
	}
}

// freeIfUnused forgets l once it has neither frames nor subscribers. With
// a backend, a log without subscribers is forgotten with its frames and no
// longer watched: nothing would keep it whole.
func (b *Broker) freeIfUnused(l *topicLog) {
	if l.subs > 0 || len(l.waiters) > 0 {
		return
	}
	if b.backend != nil {
		b.dropAll(l)
		if l.watching != nil {
			b.backend.Unwatch(l.name)
			l.watching = nil
		}
	}
	if l.len() == 0 && b.logs[l.name] == l {
		delete(b.logs, l.name)
	}
}

// janitorEvery is how often the clock of the age limit moves on, and old
// events are dropped while nothing is published.
func (b *Broker) janitorEvery() time.Duration {
	return min(max(b.cfg.retentionAge/8, 100*time.Millisecond), 30*time.Second)
}

// tick moves the clock of the age limit on and drops the events older than
// it. It runs while events are kept. Reading the clock at each publish
// took about a tenth of a publish's CPU in a profile of bench/'s scenario
// (d); this way events live at most an eighth of the age limit longer.
func (b *Broker) tick() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.now = time.Since(b.start)
	b.trimLocked()
	if b.closed || b.count == 0 {
		b.janitorOn = false
		return
	}
	b.janitor.Reset(b.janitorEvery())
}
