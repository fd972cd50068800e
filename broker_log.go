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

// frame is one event as written to clients: "id: <id>\n" and its body,
// encoded once and shared, read only, by every log and stream that holds
// it.
type frame struct {
	seq    uint64 // the broker's order of events
	id     string
	wire   []byte
	topics []string
	at     time.Duration // when appended, from the broker's start
	own    bool          // the id is one the broker gave out
	slot   uint64        // its index in b.all, over the broker's whole history
	refs   int           // the topic logs that hold it
}

// topicLog is the history of one topic: its frames in order, which every
// stream on the topic reads through a cursor.
type topicLog struct {
	name        string
	frames      []*frame // frames[start:] are kept
	start       int
	base        uint64 // index, over the topic's whole history, of frames[start]
	lastDropped uint64 // seq of the newest frame dropped, 0 for none
	policy      TopicPolicy
	subs        int       // subscribers
	waiters     []*cursor // parked cursors, woken by the next append
}

// end returns the index after the newest frame.
func (l *topicLog) end() uint64 { return l.base + uint64(len(l.frames)-l.start) }

// at returns the frame at index i, which is kept.
func (l *topicLog) at(i uint64) *frame { return l.frames[l.start+int(i-l.base)] }

// len returns the number of frames kept.
func (l *topicLog) len() int { return len(l.frames) - l.start }

// after returns the index of the first frame kept with a seq after seq.
func (l *topicLog) after(seq uint64) uint64 {
	kept := l.frames[l.start:]
	return l.base + uint64(sort.Search(len(kept), func(i int) bool { return kept[i].seq > seq }))
}

// push appends f to l, and drops the frames beyond l's policy.
func (b *Broker) push(l *topicLog, f *frame) {
	l.frames = append(l.frames, f)
	f.refs++
	limit := l.policy.MaxEvents
	if l.policy.LatestOnly {
		limit = 1
	}
	for limit > 0 && l.len() > limit {
		b.dropFront(l)
	}
}

// dropFront drops l's oldest frame, and forgets it once no log holds it.
func (b *Broker) dropFront(l *topicLog) {
	f := l.frames[l.start]
	if f.refs--; f.refs == 0 {
		b.forget(f)
	}
	l.dropped()
}

// dropped takes the oldest frame off l.
func (l *topicLog) dropped() {
	l.lastDropped = l.frames[l.start].seq
	l.frames[l.start] = nil
	l.start++
	l.base++
	if l.start >= 64 && l.start >= len(l.frames)/2 {
		n := copy(l.frames, l.frames[l.start:])
		clear(l.frames[n:])
		l.frames = l.frames[:n]
		l.start = 0
		if cap(l.frames) > 256 && n < cap(l.frames)/4 {
			l.frames = append([]*frame(nil), l.frames...) // give back what a burst grew
		}
	}
}

// wake wakes the parked cursors.
func (l *topicLog) wake() {
	for i, c := range l.waiters {
		c.waiting = false
		c.s.notify()
		l.waiters[i] = nil
	}
	l.waiters = l.waiters[:0]
}

// unpark takes c off the waiters.
func (l *topicLog) unpark(c *cursor) {
	for i, w := range l.waiters {
		if w == c {
			last := len(l.waiters) - 1
			l.waiters[i] = l.waiters[last]
			l.waiters[last] = nil
			l.waiters = l.waiters[:last]
			break
		}
	}
	c.waiting = false
}

// appendLocked adds f to the history and wakes the streams parked on its
// topics. b.mu is held.
func (b *Broker) appendLocked(f *frame) {
	f.at = time.Since(b.start)
	b.position = f.id
	f.slot = b.allBase + uint64(len(b.all)-b.allStart)
	b.all = append(b.all, f)
	b.bytes += len(f.wire)
	b.count++
	if !f.own {
		b.index[f.id] = f.seq
	}
	for _, t := range f.topics {
		l := b.logs[t]
		if l == nil {
			l = &topicLog{name: t, policy: b.cfg.policy(t)}
			b.logs[t] = l
		}
		b.push(l, f)
		l.wake()
	}
	b.trimLocked(f.at)
	if !b.janitorOn && b.cfg.retentionAge > 0 {
		b.janitorOn = true
		b.janitor.Reset(b.janitorEvery())
	}
}

// trimLocked drops the oldest events beyond the broker's limits; now is
// the time since b.start. The newest event stays whatever its size or age:
// it is the resume point of every client that is up to date.
func (b *Broker) trimLocked(now time.Duration) {
	for b.allStart < len(b.all) {
		f := b.all[b.allStart]
		if f != nil {
			over := b.count > 1 && ((b.cfg.retentionBytes > 0 && b.bytes > b.cfg.retentionBytes) ||
				(b.cfg.retentionAge > 0 && now-f.at > b.cfg.retentionAge))
			if !over {
				break
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
		b.allStart++
		b.allBase++
	}
	if b.allStart >= 64 && b.allStart >= len(b.all)/2 {
		n := copy(b.all, b.all[b.allStart:])
		clear(b.all[n:])
		b.all, b.allStart = b.all[:n], 0
		if cap(b.all) > 1024 && n < cap(b.all)/4 {
			b.all = append([]*frame(nil), b.all...)
		}
	}
}

// forget drops f from the history, once no log holds it.
func (b *Broker) forget(f *frame) {
	b.all[b.allStart+int(f.slot-b.allBase)] = nil
	b.bytes -= len(f.wire)
	b.count--
	if !f.own {
		delete(b.index, f.id)
	}
}

// freeIfUnused forgets l once it has neither frames nor subscribers.
func (b *Broker) freeIfUnused(l *topicLog) {
	if l.subs == 0 && l.len() == 0 && len(l.waiters) == 0 {
		delete(b.logs, l.name)
	}
}

// janitorEvery is how often old events are dropped while nothing is
// published.
func (b *Broker) janitorEvery() time.Duration {
	return min(max(b.cfg.retentionAge/8, 100*time.Millisecond), 30*time.Second)
}

// sweepOld drops the events older than the age limit, while nothing is
// published, and runs again while events are kept.
func (b *Broker) sweepOld() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.trimLocked(time.Since(b.start))
	if b.closed || b.count == 0 {
		b.janitorOn = false
		return
	}
	b.janitor.Reset(b.janitorEvery())
}
