package sse

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds of one batch a stream writes: one write and one flush.
const (
	batchBytes  = 32 << 10
	batchFrames = 512
)

// Bounds of the number of messages a stream asks its backend for at once.
// A replay holds one page in memory, of about batchBytes: the number is
// set by the size of the messages of the page before.
const (
	firstReplayPage = 64
	minReplayPage   = 8
	maxReplayPage   = 512
)

// cursor is a stream's place in the log of one of its topics.
type cursor struct {
	log    *topicLog
	next   uint64 // index in the log of the next frame to send
	parked bool   // in log.waiters at slot, if log.gen is still gen
	gen    uint64
	slot   int
	s      *stream

	// With a backend: the id of the topic's last event the stream passed
	// (sent, or had already), and whether that id is ahead of the log.
	pos   string
	ahead bool
}

// stream is one subscriber: an HTTP stream of Broker.Handler, or a Go
// Subscription. Its fields other than wake, pending and page are guarded
// by b.mu; pending and page belong to the goroutine that serves it.
type stream struct {
	b        *Broker
	info     SubscriberInfo
	cursors  []cursor
	lastSeq  uint64   // seq of the last frame taken (or lost): a frame of several topics is sent once
	lastID   string   // id of the last frame taken, for the signal, unless it is the broker's own:
	lastOwn  uint64   // then its seq (see lastIDLocked)
	head     []*frame // sent before the logs: the lost signal, initial events
	overrun  bool     // a log dropped frames the stream had not read
	closeErr error    // why the stream must end, once it must
	w        *Writer  // nil for a Subscription
	wake     chan struct{}
	joined   bool    // the subscribe hooks run: the unsubscribe ones run when it goes
	hooked   bool    // the subscribe hooks have returned
	leaving  error   // why it left while its subscribe hooks ran (see leaveLocked)
	left     bool    // it left then
	signals  []error // loss signals taken, for the observer once b.mu is released

	// With a backend: the history older than the logs still to replay,
	// a range for each topic, and the frames merged from their pages.
	pending   []replayRange
	page      []pageFrame
	pageLimit int    // messages to ask for next; 0 for firstReplayPage
	vec       bool   // several topics: its ids list a position for each
	sum       string // of its topics, at the start of those ids
}

// replayRange is history of the topic of s.cursors[c] to ask the backend
// for: after after, up to and including until; buf is the part of the
// page read last that is not merged yet.
type replayRange struct {
	c            int
	after, until string
	buf          []Message
	done         bool // nothing more to read
}

// pageFrame is a frame replayed, of the topic of s.cursors[c].
type pageFrame struct {
	f *frame
	c int
}

// notify wakes the stream's goroutine.
func (s *stream) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// closeLocked makes the stream end with err once it has sent what it has.
func (s *stream) closeLocked(err error) {
	if s.closeErr == nil {
		s.closeErr = err
		s.notify()
	}
}

// subscribe registers a stream on topics, with its cursors placed after
// lastID (or at the end of the logs without one), so that no event is
// missed or sent twice between the replay and the live events: both come
// from the same logs. The history older than the logs is asked of the
// backend.
//
// initial, when not nil, gives the events a client starts with when it
// has nothing to resume from (no lastID, or one that cannot be replayed).
//
// lost is why the events missed since lastID could not be replayed (an
// error wrapping ErrEventsLost), or nil.
func (b *Broker) subscribe(ctx context.Context, info SubscriberInfo, w *Writer, initial func([]string) ([]Event, error)) (s *stream, lost, err error) {
	topics, err := b.checkTopics(info.Topics, b.cfg.maxTopics)
	if err != nil {
		return nil, nil, err
	}
	info.Topics = topics
	lastID, ip := info.LastEventID, info.ClientIP
	s = &stream{b: b, info: info, lastID: lastID, w: w, wake: make(chan struct{}, 1)}
	if b.backend != nil {
		slices.Sort(topics) // the order of the positions in the stream's ids
		s.vec = len(topics) > 1
		h := fnv.New64a()
		for _, t := range topics {
			h.Write([]byte(t))
			h.Write([]byte{'\n'})
		}
		s.sum = strconv.FormatUint(h.Sum64(), 36)
	}
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return nil, nil, ErrBrokerClosed
	case b.cfg.maxSubscribers > 0 && len(b.subs) >= b.cfg.maxSubscribers:
		b.mu.Unlock()
		return nil, nil, ErrTooManySubscribers
	case ip != "" && b.cfg.maxPerIP > 0 && b.perIP[ip] >= b.cfg.maxPerIP:
		b.mu.Unlock()
		return nil, nil, ErrTooManyFromIP
	}
	b.subs[s] = struct{}{}
	if ip != "" {
		b.perIP[ip]++
	}
	if w != nil {
		b.streams++
	}
	s.cursors = make([]cursor, len(topics))
	for i, t := range topics {
		l := b.logFor(t)
		l.subs++
		s.cursors[i] = cursor{log: l, next: l.end(), s: s}
	}
	var position string // the id a client resumes after the initial events from
	if b.backend == nil {
		position = b.positionLocked()
		lost = b.placeLocked(s, lastID, initial != nil)
		b.mu.Unlock()
	} else {
		b.mu.Unlock()
		if err := b.watch(ctx, s); err != nil {
			b.remove(s, err)
			b.backendFailed("watch", err)
			return nil, nil, fmt.Errorf("%w: %w", ErrReplayFailed, err)
		}
		b.mu.Lock()
		lost = b.placeBackendLocked(s, lastID, initial != nil)
		position = s.idLocked()
		b.mu.Unlock()
		// The first page now: a store that is down refuses the stream.
		if lost == nil {
			lost, err = s.fill(ctx)
			if err != nil {
				b.remove(s, err)
				return nil, nil, err
			}
			if lost != nil && initial != nil {
				b.mu.Lock()
				s.pending = nil
				for i := range s.cursors {
					c := &s.cursors[i]
					c.next, c.pos, c.ahead = c.log.end(), c.log.endID(), false
				}
				position = s.idLocked()
				b.mu.Unlock()
			}
		}
	}

	var head []*frame // sent before the logs
	if lost != nil {
		id := "" // the client keeps its last id: the events that follow have theirs
		if initial != nil {
			id = position // the state that follows is as of position
		}
		head = append(head, lostFrame(lost, lastID, id))
		b.signalLost(lost)
	}
	if initial != nil && (lastID == "" || lost != nil) {
		events, err := initial(topics)
		if err != nil {
			b.remove(s, err)
			return nil, nil, err
		}
		for _, ev := range events {
			if ev.ID == "" && !ev.ResetID {
				ev.ID = position // a reconnect resumes after the state it got
			}
			wire, err := ev.AppendTo(nil)
			if err != nil {
				b.remove(s, err)
				return nil, nil, err
			}
			head = append(head, &frame{id: ev.ID, wire: wire})
		}
	}
	b.mu.Lock()
	_, in := b.subs[s] // not removed meanwhile by a shutdown
	if in {
		s.head = head
		s.joined = true // the unsubscribe hooks run for it from now
	}
	b.mu.Unlock()
	if in {
		b.joined(s)
		b.mu.Lock()
		s.hooked = true
		left, reason := s.left, s.leaving
		b.mu.Unlock()
		if left { // it left meanwhile: its unsubscribe hooks run after these
			b.left(s, reason)
		}
	}
	return s, lost, nil
}

// placeLocked places the cursors of s after lastID, in the logs of a
// broker without a backend, and returns why it cannot (or nil).
func (b *Broker) placeLocked(s *stream, lastID string, initial bool) (lost error) {
	if lastID == "" {
		return nil
	}
	if len(lastID) > maxIDLen || containsAny(lastID, true) {
		lost = fmt.Errorf("%w: %q", ErrMalformedEventID, lastID)
	} else if seq, ok := b.seqOf(lastID); ok {
		for i := range s.cursors {
			c := &s.cursors[i]
			c.next = c.log.after(seq)
			if c.log.lastDropped > seq && !c.log.policy.LatestOnly { // latest only: the newest is all it needs
				lost = fmt.Errorf("%w: %q", ErrHistoryExpired, lastID)
			}
		}
		s.lastSeq = seq
	} else {
		lost = fmt.Errorf("%w: %q", ErrUnknownEventID, lastID)
	}
	if lost != nil {
		for i := range s.cursors {
			c := &s.cursors[i]
			if initial {
				c.next = c.log.end() // the current state comes instead
			} else {
				c.next = c.log.base // the newest events it can still have
			}
		}
	}
	return lost
}

// watch has the backend deliver the topics of s, and waits until it does.
// The backend may deliver before Watch returns: the log keeps those
// frames, but for any of a history up to the position Watch returns. The
// Watch is shared by the subscribers that wait for it, so the context of
// the one that started it does not end it (the backend's timeout does).
func (b *Broker) watch(ctx context.Context, s *stream) error {
	for i := range s.cursors {
		l := s.cursors[i].log
		b.mu.Lock()
		call := l.watching
		if call == nil {
			call = &watchCall{done: make(chan struct{})}
			l.watching = call
			b.mu.Unlock()
			pos, err := b.backend.Watch(context.WithoutCancel(ctx), l.name)
			b.mu.Lock()
			if l.watching == call {
				if err != nil {
					b.dropAll(l)
					l.watching = nil // the next subscriber tries again
					b.backend.Unwatch(l.name)
				} else {
					for l.len() > 0 && b.compareIDs(l.at(l.base).id, pos) <= 0 {
						b.dropOldest(l)
					}
					if b.compareIDs(pos, l.from) > 0 {
						l.from = pos
					}
				}
			}
			call.err = err
			close(call.done)
			b.mu.Unlock()
		} else {
			b.mu.Unlock()
			select {
			case <-call.done:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if call.err != nil {
			return call.err
		}
	}
	return nil
}

// placeBackendLocked places the cursors of s after lastID, a position in
// each topic of s: in the logs while they hold it, and after the history
// to ask the backend for (s.pending) otherwise. It returns why it cannot
// (or nil).
func (b *Broker) placeBackendLocked(s *stream, lastID string, initial bool) (lost error) {
	var positions []string
	if lastID != "" {
		positions, lost = s.positions(lastID)
	}
	// Where each cursor resumes, once all are known to be valid.
	const (
		inLog = iota
		older
		ahead
	)
	kind := make([]int, len(s.cursors))
	next := make([]uint64, len(s.cursors))
	for i := range s.cursors {
		if lastID == "" || lost != nil {
			break
		}
		l := s.cursors[i].log
		if b.compareIDs(positions[i], l.from) < 0 {
			kind[i] = older
			continue
		}
		n, known := b.search(l, positions[i])
		switch {
		case known:
			kind[i], next[i] = inLog, n
		case n == l.end():
			// Past what this process delivered: another one sent it.
			// The backend checks it, and the log skips up to it.
			kind[i], next[i] = ahead, n
		default:
			lost = fmt.Errorf("%w: %q", ErrUnknownEventID, lastID)
		}
	}
	for i := range s.cursors {
		c := &s.cursors[i]
		l := c.log
		switch {
		case lastID == "" || (lost != nil && initial):
			c.next, c.pos = l.end(), l.endID()
		case lost != nil:
			c.next, c.pos = l.base, l.from
		case kind[i] == older:
			s.pending = append(s.pending, replayRange{c: i, after: positions[i], until: l.from})
			c.next, c.pos = l.base, positions[i]
		case kind[i] == ahead:
			s.pending = append(s.pending, replayRange{c: i, after: positions[i], until: positions[i]})
			c.next, c.pos, c.ahead = next[i], positions[i], true
		default:
			c.next, c.pos = next[i], positions[i]
		}
	}
	if len(s.pending) > 0 && s.vec && lost == nil {
		// Every topic is replayed up to the same point, and its log goes
		// on after what was replayed: the topics' pages are merged in id
		// order, so that no event of several topics comes before an
		// earlier event of one of them.
		until := ""
		for _, r := range s.pending {
			if b.compareIDs(r.until, until) > 0 {
				until = r.until
			}
		}
		s.pending = s.pending[:0]
		s.replayUpTo(until, -1)
	}
	return lost
}

// positions returns the position in each topic of s that lastID holds:
// the id itself for one topic, else "<sum of the topics>:<id>,<id>,...".
func (s *stream) positions(lastID string) ([]string, error) {
	if len(lastID) > len(s.cursors)*(maxIDLen+1)+len(s.sum) || containsAny(lastID, true) {
		return nil, fmt.Errorf("%w: %q", ErrMalformedEventID, lastID)
	}
	if !s.vec {
		return []string{lastID}, nil
	}
	sum, list, ok := strings.Cut(lastID, ":")
	positions := strings.Split(list, ",")
	if !ok || sum != s.sum || len(positions) != len(s.cursors) {
		return nil, fmt.Errorf("%w: %q is not an id of a stream on these topics", ErrUnknownEventID, lastID)
	}
	return positions, nil
}

// idLocked returns the id of the position of s, as positions reads it.
func (s *stream) idLocked() string {
	if !s.vec {
		return s.cursors[0].pos
	}
	id := append(make([]byte, 0, 64), s.sum...)
	for i := range s.cursors {
		if i == 0 {
			id = append(id, ':')
		} else {
			id = append(id, ',')
		}
		id = append(id, s.cursors[i].pos...)
	}
	return string(id)
}

// fill reads the next pages of the history older than the logs, once
// the frames of the last ones are sent, and merges them by id: each
// topic's events in order, and an event of several topics after the
// events before it in each. lost is why a topic's history cannot be
// replayed: its cursor then starts at the oldest event of its log.
func (s *stream) fill(ctx context.Context) (lost, err error) {
	if len(s.pending) == 0 || len(s.page) > 0 {
		return nil, nil
	}
	b := s.b
	for i := range s.pending {
		r := &s.pending[i]
		if r.done || len(r.buf) > 0 {
			continue
		}
		limit := cmp.Or(s.pageLimit, firstReplayPage)
		msgs, err := b.backend.Replay(ctx, s.cursors[r.c].log.name, r.after, r.until, limit)
		switch {
		case errors.Is(err, ErrEventsLost):
			b.mu.Lock()
			c := &s.cursors[r.c]
			c.next, c.pos, c.ahead = c.log.base, c.log.from, false
			b.mu.Unlock()
			r.done, lost = true, err
			continue
		case err != nil:
			s.b.backendFailed("replay", err)
			return nil, fmt.Errorf("%w: %w", ErrReplayFailed, err)
		}
		r.buf = msgs
		if len(msgs) < limit || r.after == r.until {
			r.done = true
		} else {
			r.after = msgs[len(msgs)-1].ID
		}
		if len(msgs) > 0 {
			size := 1
			for _, m := range msgs {
				size += len(m.Body)
			}
			s.pageLimit = min(max(batchBytes*len(msgs)/size, minReplayPage), maxReplayPage)
		}
	}
	for {
		best := -1
		for i := range s.pending {
			r := &s.pending[i]
			if len(r.buf) == 0 {
				if !r.done {
					best = -1 // its next page first
					break
				}
				continue
			}
			if best < 0 || b.compareIDs(r.buf[0].ID, s.pending[best].buf[0].ID) < 0 {
				best = i
			}
		}
		if best < 0 {
			break
		}
		r := &s.pending[best]
		m := r.buf[0]
		r.buf = r.buf[1:]
		wire := append(append(append(make([]byte, 0, len("id: \n")+len(m.ID)+len(m.Body)), "id: "...), m.ID...), '\n')
		s.page = append(s.page, pageFrame{&frame{id: m.ID, wire: append(wire, m.Body...), topics: m.Topics}, r.c})
	}
	s.pending = slices.DeleteFunc(s.pending, func(r replayRange) bool { return r.done && len(r.buf) == 0 })
	return lost, nil
}

// refill is fill for a stream under way: a history that cannot be
// replayed is signalled in band.
func (s *stream) refill(ctx context.Context) error {
	lost, err := s.fill(ctx)
	if lost != nil {
		s.b.mu.Lock()
		if !s.overrun { // one signal for each gap
			s.overrun = true
			s.head = append(s.head, lostFrame(lost, s.lastIDLocked(), ""))
		} else {
			lost = nil
		}
		s.b.mu.Unlock()
		if lost != nil {
			s.b.signalLost(lost)
		}
	}
	return err
}

// replaying reports whether s has history older than the logs to send.
func (s *stream) replaying() bool { return len(s.pending) > 0 || len(s.page) > 0 }

// take appends to dst the frames s has to send next, at most a batch, and
// returns them with closed, the error that ends s once it has sent them
// all. With nothing to send it parks s's cursors, so that the next append
// to one of its logs wakes it.
func (s *stream) take(dst [][]byte) (wires [][]byte, closed error) {
	b := s.b
	b.mu.Lock()
	wires, closed = s.takeLocked(dst)
	signals := s.signals
	s.signals = nil
	b.mu.Unlock()
	for _, err := range signals {
		b.cfg.observer.Lost(err)
	}
	return wires, closed
}

// takeLocked is take's work: it appends the encodings of the frames to
// send to dst.
func (s *stream) takeLocked(dst [][]byte) ([][]byte, error) {
	size := 0
	for len(s.head) > 0 && size < batchBytes && len(dst) < batchFrames {
		f := s.head[0]
		s.head[0] = nil
		s.head = s.head[1:]
		dst = append(dst, f.wire)
		size += len(f.wire)
	}
	for len(s.page) > 0 && size < batchBytes && len(dst) < batchFrames {
		f := s.admitLocked(s.page[0].f, &s.cursors[s.page[0].c], false)
		s.page[0] = pageFrame{}
		s.page = s.page[1:]
		if f != nil {
			dst = append(dst, f.wire)
			size += len(f.wire)
		}
	}
	if s.replaying() {
		return dst, s.closeErr // the logs come after
	}
	for size < batchBytes && len(dst) < batchFrames {
		wire, ok := s.nextLocked()
		if !ok {
			break
		}
		dst = append(dst, wire)
		size += len(wire)
	}
	if len(dst) == 0 && s.closeErr == nil && !s.replaying() {
		for i := range s.cursors {
			s.cursors[i].park()
		}
	}
	return dst, s.closeErr
}

// nextLocked returns the encoding of the next frame of s's logs, in seq
// order, and false when there is none.
//
// A log that dropped frames s had not read yet (an overrun) gives the
// events-lost signal, and the stream goes on from the oldest frame that
// log still holds; the frames of its other topics published before that
// one are skipped too, so that the events lost are exactly those between
// the last frame before the signal and the first one after it. With a
// backend, the stream asks it for the frames dropped instead, and returns
// none, to have them read (see fill).
func (s *stream) nextLocked() ([]byte, bool) {
	for {
		var best *cursor
		for i := range s.cursors {
			c := &s.cursors[i]
			if c.next < c.log.base { // the log dropped frames s had not read
				if c.log.policy.LatestOnly && c.log.len() > 0 {
					c.next = c.log.end() - 1 // only the newest matters
				} else if s.b.backend != nil {
					// The backend still has them, most likely. With several
					// topics, all of them are replayed up to the same point,
					// so that the merge keeps each topic's order.
					c.next = c.log.base
					s.replayUpTo(c.log.from, i)
					return nil, false
				} else {
					c.next = c.log.base
					resume := c.log.lastDropped // the frames up to it are lost
					if c.log.len() > 0 {
						resume = c.log.seqAt(c.log.base) - 1
					}
					s.lastSeq = max(s.lastSeq, resume)
					if !s.overrun { // one signal for each gap
						s.overrun = true
						return s.lostLocked(ErrOverrun).wire, true
					}
				}
			}
			if c.next < c.log.end() && (best == nil || c.log.seqAt(c.next) < best.log.seqAt(best.next)) {
				best = c
			}
		}
		if best == nil {
			return nil, false
		}
		f := best.log.at(best.next)
		best.next++
		if s.b.backend != nil {
			if sent := s.admitLocked(&f, best, true); sent != nil {
				return sent.wire, true
			}
			continue
		}
		if f.seq <= s.lastSeq {
			continue // sent already, from another of its topics, or lost
		}
		s.lastSeq = f.seq
		s.taken(&f)
		s.overrun = false
		return f.wire, true
	}
}

// taken records f as the last frame taken, for the signal's lastEventId.
func (s *stream) taken(f *frame) {
	if f.own {
		s.lastID, s.lastOwn = "", f.seq
	} else {
		s.lastID, s.lastOwn = f.id, 0
	}
}

// lastIDLocked returns the id of the last frame taken (or the client's
// Last-Event-ID, before any).
func (s *stream) lastIDLocked() string {
	if s.lastOwn != 0 {
		return s.b.ownIDOf(s.lastOwn)
	}
	return s.lastID
}

// replayUpTo has s replay the history of its topic i up to until, and of
// its other topics too when it has several; their logs go on after what
// was replayed. b.mu is held.
func (s *stream) replayUpTo(until string, i int) {
	for j := range s.cursors {
		c := &s.cursors[j]
		if j != i && !s.vec {
			continue
		}
		r := replayRange{c: j, after: c.pos, until: until}
		if s.b.compareIDs(c.pos, until) > 0 {
			r.until = c.pos // it only checks c.pos
		}
		s.pending = append(s.pending, r)
		if s.vec {
			c.ahead = true
		}
	}
}

// admitLocked returns what s sends for f, a frame of the topic of c with a
// backend (of c's log, or replayed): nil when s has it already, the signal
// for a gap, or f, with the id of the position of s when it has several
// topics. It moves c past f.
//
// A frame of the log that is not after c's position while c is ahead of
// its log was replayed or sent by another process. A backend gives an
// event published to several topics the same id in each of them, so s had
// f already when its position in another of f's topics is f or later.
func (s *stream) admitLocked(f *frame, c *cursor, ofLog bool) *frame {
	b := s.b
	if f.gap != nil {
		c.pos, c.ahead = f.id, false
		if s.overrun {
			return nil
		}
		s.overrun = true
		return s.lostLocked(f.gap)
	}
	if c.ahead && ofLog {
		if b.compareIDs(f.id, c.pos) <= 0 {
			return nil
		}
		c.ahead = false
	}
	if len(f.topics) > 1 && s.vec {
		for i := range s.cursors {
			if d := &s.cursors[i]; d != c && containsString(f.topics, d.log.name) && b.compareIDs(f.id, d.pos) <= 0 {
				c.pos = f.id
				return nil
			}
		}
	}
	c.pos = f.id
	s.overrun = false
	if !s.vec {
		s.lastID = f.id
		return f
	}
	id := s.idLocked()
	s.lastID = id
	body := f.wire[len("id: ")+len(f.id)+len("\n"):]
	wire := make([]byte, 0, len("id: \n")+len(id)+len(body))
	wire = append(append(append(append(wire, "id: "...), id...), '\n'), body...)
	return &frame{id: id, wire: wire}
}

// lostLocked is the signal of a gap while s is under way. b.mu is held:
// the observer hears of it through s.signals, after the lock.
func (s *stream) lostLocked(err error) *frame {
	s.b.lost.Add(1)
	if s.b.cfg.observer != nil {
		s.signals = append(s.signals, err)
	}
	return lostFrame(err, s.lastIDLocked(), "")
}

// remove takes s out of the broker and runs the unsubscribe hooks, for a
// subscriber that joined; reason is why it left (see
// [Observer.Unsubscribed]).
func (b *Broker) remove(s *stream, reason error) {
	b.mu.Lock()
	removed := b.removeLocked(s)
	hooks := removed && b.leaveLocked(s, reason)
	b.mu.Unlock()
	if hooks {
		b.left(s, reason)
	}
	if removed && s.w != nil {
		// Counted out after its hooks ran: Shutdown returns after them.
		b.mu.Lock()
		b.streams--
		if b.closed && b.streams == 0 {
			close(b.drained)
		}
		b.mu.Unlock()
	}
}

// leaveLocked reports whether the unsubscribe hooks of s, which left for
// reason, are to run now: not for a subscriber that never joined, and
// later, by subscribe, for one whose subscribe hooks still run.
func (b *Broker) leaveLocked(s *stream, reason error) bool {
	if !s.joined {
		return false
	}
	if !s.hooked {
		s.left, s.leaving = true, reason
		return false
	}
	return true
}

// removeLocked takes s out of the broker, if it is still in.
func (b *Broker) removeLocked(s *stream) bool {
	if _, ok := b.subs[s]; !ok {
		return false
	}
	delete(b.subs, s)
	if len(b.subs) == 0 {
		b.subs = make(map[*stream]struct{}) // a map keeps the room it grew to
	}
	s.closeLocked(ErrSubscriptionClosed)
	for i := range s.cursors {
		c := &s.cursors[i]
		c.unpark()
		c.log.subs--
		b.freeIfUnused(c.log)
	}
	s.head = nil
	if ip := s.info.ClientIP; ip != "" {
		if b.perIP[ip]--; b.perIP[ip] <= 0 {
			delete(b.perIP, ip)
		}
	}
	return true
}

// errStopped ends a stream whose done channel ([WithDone]) closed.
var errStopped = errors.New("sse: stream stopped by its done channel")

// bufPool holds the buffers that batches of several frames are copied
// into for their one write: at most batchBytes each, held only while a
// stream writes.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, batchBytes); return &b }}

// serve writes s's events to w until the client leaves, the done channel
// closes, the broker shuts down or a write fails. It waits for its wake
// signal, its request's context, the done channel and its heartbeat.
func (b *Broker) serve(ctx context.Context, w *Writer, s *stream) error {
	cfg := w.config()
	var timer *time.Timer
	var beat <-chan time.Time
	if cfg.heartbeat > 0 {
		timer = time.NewTimer(cfg.heartbeat)
		defer timer.Stop()
		beat = timer.C
	}
	var frames [][]byte
	for {
		if ctx.Err() != nil {
			return clientGone(ctx)
		}
		if s.replaying() {
			if err := s.refill(ctx); err != nil {
				return err
			}
		}
		var closed error
		frames, closed = s.take(frames[:0])
		if len(frames) > 0 {
			err := b.write(w, frames)
			clear(frames)
			if err != nil {
				return err
			}
			continue
		}
		if closed != nil {
			if errors.Is(closed, ErrBrokerClosed) {
				if ev := b.cfg.shutdownEvent; ev != nil {
					if err := w.Send(*ev); err != nil {
						return err
					}
				}
			}
			return closed
		}
		if s.replaying() {
			continue
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return clientGone(ctx)
		case <-cfg.done:
			return errStopped
		case now := <-beat:
			idle := w.idle(now)
			if idle >= cfg.heartbeat-cfg.heartbeat/10 {
				if err := w.Comment("heartbeat"); err != nil {
					return err
				}
				idle = 0
			}
			timer.Reset(cfg.heartbeat - idle)
		}
	}
}

// write writes frames in one write and one flush, or a few when they do
// not fit in one buffer (a frame larger than one is written as it is).
func (b *Broker) write(w *Writer, frames [][]byte) error {
	if len(frames) == 1 {
		return b.written(len(frames), w.writeFrames(frames[0], 1))
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf, n := (*bp)[:0], 0
	for _, wire := range frames {
		if len(buf)+len(wire) > cap(buf) && n > 0 {
			if err := b.written(n, w.writeFrames(buf, n)); err != nil {
				return err
			}
			buf, n = buf[:0], 0
		}
		if len(wire) > cap(buf) {
			if err := b.written(1, w.writeFrames(wire, 1)); err != nil {
				return err
			}
			continue
		}
		buf = append(buf, wire...)
		n++
	}
	if n == 0 {
		return nil
	}
	return b.written(n, w.writeFrames(buf, n))
}

// written counts n frames written, unless err.
func (b *Broker) written(n int, err error) error {
	if err == nil {
		b.delivered.Add(uint64(n))
		if o := b.cfg.observer; o != nil {
			o.Delivered(n)
		}
	}
	return err
}
