package sse

import (
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

// frame is one event as a stream writes it: "id: <id>\n" and its body.
// The frames of a log are views of its entries (see topicLog.at), valid
// while b.mu is held, whose wire is shared, read only, by every stream
// that sends it; a stream's own frames (the lost signal, initial events,
// replayed pages) stand alone.
type frame struct {
	seq    uint64 // the broker's order of events; 0 for a stream's own frames
	id     string // "" for an id the broker gave out (own): see Broker.ownIDOf
	wire   []byte
	topics []string // with a backend, those of an event of several topics
	own    bool
	gap    error // not an event: the backend lost the events before it (see Message.Lost)
}

// entry is one event of a topic's log. It holds no pointers, so that the
// garbage collector does not walk the history: its encoding is in one of
// the log's chunks, and what only some events have (an id not the
// broker's own, several topics, a gap) is in the log's metas. (With a
// history of frames of their own, 3 objects per event, the collector took
// about a third of bench/'s scenario (d) in process. Eight interleaved
// runs of (d), `sseserver` and `sseload -clients 1 -events 200000 -size
// 0`: 1.18 to 1.51 M/s with those frames, 1.85 to 2.07 M/s with entries,
// bare 1.93 to 2.84 M/s; BenchmarkBrokerBurst: 260 to 290 ns and 4
// allocations per event before, 200 to 215 ns and 2 after.)
type entry struct {
	seq   uint64
	at    time.Duration // when appended, from the broker's start
	chunk uint32        // the chunk of its encoding, numbered over the log's history
	off   uint32        // where its encoding starts in the chunk
	n     uint32        // the length of its encoding
	flags uint8
}

const (
	entryOwn     = 1 << iota // its id is one the broker gave out
	entryHasMeta             // it has a meta, under its seq
)

// entryMeta is what an entry has beyond its encoding, when it has more.
type entryMeta struct {
	id     string
	topics []string // of an event of several topics, with a backend
	gap    error
	// An event published with an id of its own is in b.index while a log
	// holds it: its meta, shared by the logs of its topics, counts them.
	indexed bool
	refs    int32
}

// entryOverhead is what an entry costs beyond its encoding: itself and
// its place in the broker's FIFO.
const entryOverhead = 48

// Bounds of a log's chunks: a chunk holds the encodings of consecutive
// events of its log; it is freed when its last event is dropped.
const (
	minChunk = 256
	maxChunk = 16 << 10
)

// ring is a queue over a circular buffer whose length is a power of two:
// pushing and popping move no other element.
type ring[T any] struct {
	buf     []T
	head, n int
}

func (r *ring[T]) at(i int) *T { return &r.buf[(r.head+i)&(len(r.buf)-1)] }

func (r *ring[T]) push(v T) {
	if r.n == len(r.buf) {
		r.resize(max(2*len(r.buf), 8))
	}
	*r.at(r.n) = v
	r.n++
}

// pop drops the oldest element, and gives back room a burst grew.
func (r *ring[T]) pop() {
	var zero T
	r.buf[r.head] = zero
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	if len(r.buf) > 64 && r.n < len(r.buf)/8 {
		r.resize(len(r.buf) / 4)
	}
}

func (r *ring[T]) resize(size int) {
	buf := make([]T, size)
	for i := range r.n {
		buf[i] = *r.at(i)
	}
	r.buf, r.head = buf, 0
}

// logRef is an entry in the broker's FIFO of every entry, oldest first:
// the number of its log (see Broker.logTab) and its seq. It outlives an
// entry that its log dropped on its own (a topic policy, a gap): the
// seq then no longer matches the log's oldest entry.
type logRef struct {
	log uint32
	seq uint64
}

// topicLog is the history of one topic: its entries in order, which every
// stream on the topic reads through a cursor.
type topicLog struct {
	name        string
	num         uint32 // its index in b.logTab
	entries     ring[entry]
	chunks      [][]byte // the encodings of its entries, oldest first
	chunkBase   uint32   // the number of chunks[0]
	live        int      // bytes of the encodings of its entries
	metas       map[uint64]*entryMeta
	base        uint64 // index, over the topic's whole history, of its oldest entry kept
	lastDropped uint64 // seq of the newest entry dropped, 0 for none
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

// end returns the index after the newest entry.
func (l *topicLog) end() uint64 { return l.base + uint64(l.entries.n) }

// at returns a view of the entry at index i, which is kept.
func (l *topicLog) at(i uint64) frame {
	e := l.entries.at(int(i - l.base))
	f := frame{seq: e.seq, own: e.flags&entryOwn != 0}
	if e.n > 0 {
		f.wire = l.chunks[e.chunk-l.chunkBase][e.off : e.off+e.n : e.off+e.n]
	}
	if e.flags&entryHasMeta != 0 {
		m := l.metas[e.seq]
		f.id, f.topics, f.gap = m.id, m.topics, m.gap
	}
	return f
}

// seqAt returns the seq of the entry at index i, which is kept.
func (l *topicLog) seqAt(i uint64) uint64 { return l.entries.at(int(i - l.base)).seq }

// len returns the number of entries kept.
func (l *topicLog) len() int { return l.entries.n }

// after returns the index of the first entry kept with a seq after seq.
func (l *topicLog) after(seq uint64) uint64 {
	return l.base + uint64(sort.Search(l.entries.n, func(i int) bool { return l.entries.at(i).seq > seq }))
}

// endID returns the id of the newest entry, or from without entries. Only
// with a backend.
func (l *topicLog) endID() string {
	if l.entries.n == 0 {
		return l.from
	}
	return l.at(l.end() - 1).id
}

// search returns the index of the first entry with an id after id, and
// whether id is from or the id of the entry before it: a position of the
// topic's history the log knows. Only with a backend.
func (b *Broker) search(l *topicLog, id string) (uint64, bool) {
	i := sort.Search(l.entries.n, func(i int) bool { return b.compareIDs(l.at(l.base+uint64(i)).id, id) > 0 })
	if i == 0 {
		return l.base, id == l.from
	}
	return l.base + uint64(i), l.at(l.base+uint64(i)-1).id == id
}

// dropAll drops every entry of l.
func (b *Broker) dropAll(l *topicLog) {
	for l.len() > 0 {
		b.dropOldest(l)
	}
}

// dropOldest drops the oldest entry of l, and the chunks only it held.
func (b *Broker) dropOldest(l *topicLog) {
	e := l.entries.at(0)
	l.lastDropped = e.seq
	if e.flags&entryHasMeta != 0 {
		m := l.metas[e.seq]
		delete(l.metas, e.seq)
		l.from = m.id
		if m.indexed {
			if m.refs--; m.refs == 0 {
				delete(b.index, m.id)
			}
		}
	}
	l.live -= int(e.n)
	l.entries.pop()
	l.base++
	b.count--
	b.bytes -= entryOverhead
	keep := l.chunkBase + uint32(len(l.chunks)) // none, without entries
	if l.entries.n > 0 {
		keep = l.entries.at(0).chunk
	}
	for len(l.chunks) > 0 && l.chunkBase != keep {
		b.bytes -= cap(l.chunks[0])
		l.chunks[0] = nil
		l.chunks = l.chunks[1:]
		l.chunkBase++
	}
}

// reserve returns room for an encoding of n bytes at the end of l's
// chunks, and where it is. A new chunk is twice what the log holds, so
// that a log that keeps little (a latest-only topic) keeps small chunks,
// from minChunk up to maxChunk (and a 64th of the broker's byte limit, so
// that one chunk does not hold most of it); a larger encoding has a chunk
// of its own.
func (b *Broker) reserve(l *topicLog, n int) (dst []byte, chunk, off uint32) {
	l.live += n
	k := len(l.chunks)
	if k == 0 || cap(l.chunks[k-1])-len(l.chunks[k-1]) < n {
		size := max(2*l.live, minChunk)
		limit := maxChunk
		if b.cfg.retentionBytes > 0 {
			limit = min(limit, max(b.cfg.retentionBytes/64, minChunk))
		}
		size = max(min(size, limit), n)
		l.chunks = append(l.chunks, make([]byte, 0, size))
		b.bytes += size
		k++
	}
	c := l.chunks[k-1]
	start := len(c)
	l.chunks[k-1] = c[:start+n]
	return c[start : start+n], l.chunkBase + uint32(k-1), uint32(start)
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
		l = &topicLog{name: t, policy: b.cfg.policy(t)}
		if n := len(b.freeNums); n > 0 {
			l.num, b.freeNums = b.freeNums[n-1], b.freeNums[:n-1]
			b.logTab[l.num] = l
		} else {
			l.num = uint32(len(b.logTab))
			b.logTab = append(b.logTab, l)
		}
		b.logs[t] = l
	}
	return l
}

// appendLocked appends the event seq to l: its "id:" line and body,
// encoded into l's chunks (a gap, with m.gap set, has no encoding), and m,
// when not nil, what it has beyond that. It drops the entries beyond l's
// policy and wakes the streams parked on l. b.mu is held; the caller then
// calls appended.
func (b *Broker) appendLocked(l *topicLog, seq uint64, id string, own bool, body []byte, m *entryMeta) {
	e := entry{seq: seq, at: b.now}
	if own {
		e.flags |= entryOwn
	}
	if m == nil || m.gap == nil {
		n := len("id: \n") + len(id) + len(body)
		dst, chunk, off := b.reserve(l, n)
		copy(dst, "id: ")
		copy(dst[len("id: "):], id)
		dst[len("id: ")+len(id)] = '\n'
		copy(dst[len("id: \n")+len(id):], body)
		e.chunk, e.off, e.n = chunk, off, uint32(n)
	}
	if m != nil {
		e.flags |= entryHasMeta
		if l.metas == nil {
			l.metas = make(map[uint64]*entryMeta)
		}
		l.metas[seq] = m
		if m.indexed {
			m.refs++
		}
	}
	l.entries.push(e)
	b.all.push(logRef{log: l.num, seq: seq})
	b.count++
	b.bytes += entryOverhead
	limit := l.policy.MaxEvents
	if l.policy.LatestOnly {
		limit = 1
	}
	for limit > 0 && l.len() > limit {
		b.dropOldest(l)
	}
	b.wakeLocked(l)
}

// appended ends the append of the event seq to its logs: it is the
// newest, and the history is trimmed to the broker's limits. b.mu is
// held.
func (b *Broker) appended(seq uint64, id string, own bool) {
	b.posSeq, b.posID = seq, id
	if own {
		b.posID = ""
	}
	b.trimLocked()
	if b.all.n > 2*b.count+64 {
		b.compactAll()
	}
	if !b.janitorOn && b.cfg.retentionAge > 0 {
		b.janitorOn = true
		b.janitor.Reset(b.janitorEvery())
	}
}

// compactAll takes out of b.all the entries that their logs dropped on
// their own (a topic policy, a gap, a log no longer watched). They leave
// b.all only when they reach its head, which the limits may not move for a
// long time: a latest-only topic would grow it by an entry per publish.
func (b *Broker) compactAll() {
	var kept ring[logRef]
	for i := range b.all.n {
		ref := *b.all.at(i)
		if l := b.logTab[ref.log]; l != nil && l.holds(ref.seq) {
			kept.push(ref)
		}
	}
	b.all = kept
}

// holds reports whether l keeps the entry seq.
func (l *topicLog) holds(seq uint64) bool {
	i := l.after(seq - 1)
	return i < l.end() && l.seqAt(i) == seq
}

// positionLocked returns the id of the newest event. b.mu is held.
func (b *Broker) positionLocked() string {
	if b.posID != "" {
		return b.posID
	}
	return b.ownIDOf(b.posSeq)
}

// trimLocked drops the oldest events beyond the broker's limits. The
// newest event stays whatever its size or age: it is the resume point of
// every client that is up to date.
func (b *Broker) trimLocked() {
	for b.all.n > 0 {
		ref := *b.all.at(0)
		if l := b.logTab[ref.log]; l != nil && l.len() > 0 && l.entries.at(0).seq == ref.seq {
			over := ref.seq != b.posSeq && ((b.cfg.retentionBytes > 0 && b.bytes > b.cfg.retentionBytes) ||
				(b.cfg.retentionAge > 0 && b.now-l.entries.at(0).at > b.cfg.retentionAge))
			if !over {
				return
			}
			b.dropOldest(l)
			b.freeIfUnused(l)
		}
		b.all.pop()
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
		b.logTab[l.num] = nil
		b.freeNums = append(b.freeNums, l.num)
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
