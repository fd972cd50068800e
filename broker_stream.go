package sse

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Bounds of one batch a stream writes: one write and one flush.
const (
	batchBytes  = 32 << 10
	batchFrames = 512
)

// cursor is a stream's place in the log of one of its topics.
type cursor struct {
	log     *topicLog
	next    uint64 // index in the log of the next frame to send
	waiting bool   // parked in log.waiters
	s       *stream
}

// stream is one subscriber: an HTTP stream of Broker.Handler, or a Go
// Subscription. Its fields other than wake are guarded by b.mu.
type stream struct {
	b        *Broker
	info     SubscriberInfo
	cursors  []cursor
	lastSeq  uint64   // seq of the last frame taken (or lost): a frame of several topics is sent once
	lastID   string   // id of the last frame taken, for the signal
	head     []*frame // sent before the logs: a replay from the backend, the lost signal, initial events
	skip     string   // frames up to this id are the client's already (see IDComparer)
	overrun  bool     // a log dropped frames the stream had not read
	closeErr error    // why the stream must end, once it must
	w        *Writer  // nil for a Subscription
	wake     chan struct{}
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
func (b *Broker) subscribe(ctx context.Context, topics []string, lastID, ip string, w *Writer, initial func([]string) ([]Event, error)) (s *stream, lost, err error) {
	topics, err = b.checkTopics(topics, b.cfg.maxTopics)
	if err != nil {
		return nil, nil, err
	}
	s = &stream{b: b, info: SubscriberInfo{Topics: topics, ClientIP: ip, LastEventID: lastID}, lastID: lastID, w: w, wake: make(chan struct{}, 1)}
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
	position := b.position
	askBackend := false
	if lastID != "" {
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
		} else if b.backend != nil {
			askBackend = true
		} else {
			lost = fmt.Errorf("%w: %q", ErrUnknownEventID, lastID)
		}
		for i := range s.cursors {
			switch c := &s.cursors[i]; {
			case lost == nil:
			case initial != nil:
				c.next = c.log.end() // the current state comes instead
			default:
				c.next = c.log.base // the newest events it can still have
			}
		}
	}
	b.mu.Unlock()

	var head []*frame // sent before the logs
	if askBackend {
		head, lost, err = b.replay(ctx, s, lastID, position)
		if err != nil {
			b.remove(s)
			return nil, nil, err
		}
	}
	if lost != nil {
		id := "" // the client keeps its last id: the events that follow have theirs
		if initial != nil {
			id = position // the state that follows is as of position
		}
		head = append(head, lostFrame(lost, lastID, id))
		b.lost.Add(1)
	}
	if initial != nil && (lastID == "" || lost != nil) {
		events, err := initial(topics)
		if err != nil {
			b.remove(s)
			return nil, nil, err
		}
		for _, ev := range events {
			if ev.ID == "" && !ev.ResetID {
				ev.ID = position // a reconnect resumes after the state it got
			}
			wire, err := ev.AppendTo(nil)
			if err != nil {
				b.remove(s)
				return nil, nil, err
			}
			head = append(head, &frame{id: ev.ID, wire: wire})
		}
	}
	b.mu.Lock()
	if _, ok := b.subs[s]; ok { // not removed meanwhile by a shutdown
		s.head = head
	}
	b.mu.Unlock()
	if hook := b.cfg.onSubscribe; hook != nil {
		hook(s.info)
	}
	return s, lost, nil
}

// replay asks the backend for the events missed since lastID, up to
// position, where the cursors start: history older than the logs.
func (b *Broker) replay(ctx context.Context, s *stream, lastID, position string) (head []*frame, lost, err error) {
	if cmp, ok := b.backend.(IDComparer); ok && position != "" {
		if c, err := cmp.CompareIDs(lastID, position); err == nil && c > 0 {
			// The client has seen events this process has not delivered
			// yet (its backend reader lags behind another server's):
			// check that the id is real, then skip what it already has
			// as it arrives.
			if _, err := b.backend.Replay(ctx, s.info.Topics, lastID, lastID); err == nil {
				b.mu.Lock()
				s.skip = lastID
				b.mu.Unlock()
				return nil, nil, nil
			}
		}
	}
	msgs, err := b.backend.Replay(ctx, s.info.Topics, lastID, position)
	switch {
	case errors.Is(err, ErrEventsLost):
		return nil, err, nil
	case err != nil:
		return nil, nil, fmt.Errorf("%w: %w", ErrReplayFailed, err)
	}
	head = make([]*frame, len(msgs))
	for i, m := range msgs {
		wire := append(append(append(make([]byte, 0, len("id: \n")+len(m.ID)+len(m.Body)), "id: "...), m.ID...), '\n')
		head[i] = &frame{id: m.ID, wire: append(wire, m.Body...)}
	}
	return head, nil, nil
}

// take appends to dst the frames s has to send next, at most a batch, and
// returns them with closed, the error that ends s once it has sent them
// all. With nothing to send it parks s's cursors, so that the next append
// to one of its logs wakes it.
func (s *stream) take(dst []*frame) (frames []*frame, closed error) {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	size := 0
	for len(s.head) > 0 && size < batchBytes && len(dst) < batchFrames {
		f := s.head[0]
		s.head[0] = nil
		s.head = s.head[1:]
		dst = append(dst, f)
		size += len(f.wire)
	}
	for size < batchBytes && len(dst) < batchFrames {
		f := s.nextLocked()
		if f == nil {
			break
		}
		dst = append(dst, f)
		size += len(f.wire)
	}
	if len(dst) == 0 && s.closeErr == nil {
		for i := range s.cursors {
			if c := &s.cursors[i]; !c.waiting {
				c.waiting = true
				c.log.waiters = append(c.log.waiters, c)
			}
		}
	}
	return dst, s.closeErr
}

// nextLocked returns the next frame of s's logs, in seq order, or nil.
//
// A log that dropped frames s had not read yet (an overrun) gives the
// events-lost signal, and the stream goes on from the oldest frame that
// log still holds: the frames of its other topics published before that
// one are skipped too, so that the events lost are exactly those between
// the last frame before the signal and the first one after it.
func (s *stream) nextLocked() *frame {
	for {
		var best *cursor
		for i := range s.cursors {
			c := &s.cursors[i]
			if c.next < c.log.base { // the log dropped frames s had not read
				if c.log.policy.LatestOnly && c.log.len() > 0 {
					c.next = c.log.end() - 1 // only the newest matters
				} else {
					c.next = c.log.base
					resume := c.log.lastDropped // the frames up to it are lost
					if c.log.len() > 0 {
						resume = c.log.at(c.log.base).seq - 1
					}
					s.lastSeq = max(s.lastSeq, resume)
					if !s.overrun { // one signal for each gap
						s.overrun = true
						return s.lostLocked()
					}
				}
			}
			if c.next < c.log.end() && (best == nil || c.log.at(c.next).seq < best.log.at(best.next).seq) {
				best = c
			}
		}
		if best == nil {
			return nil
		}
		f := best.log.at(best.next)
		best.next++
		if f.seq <= s.lastSeq {
			continue // sent already, from another of its topics, or lost
		}
		s.lastSeq = f.seq
		s.lastID = f.id
		if s.skip != "" {
			if c, err := s.b.backend.(IDComparer).CompareIDs(f.id, s.skip); err == nil && c <= 0 {
				continue
			}
			s.skip = ""
		}
		s.overrun = false
		return f
	}
}

// lostLocked is the signal of an overrun.
func (s *stream) lostLocked() *frame {
	s.b.lost.Add(1)
	return lostFrame(ErrOverrun, s.lastID, "")
}

// remove takes s out of the broker and calls the unsubscribe hook.
func (b *Broker) remove(s *stream) {
	b.mu.Lock()
	removed := b.removeLocked(s)
	b.mu.Unlock()
	if hook := b.cfg.onUnsubscribe; removed && hook != nil {
		hook(s.info)
	}
}

// removeLocked takes s out of the broker, if it is still in.
func (b *Broker) removeLocked(s *stream) bool {
	if _, ok := b.subs[s]; !ok {
		return false
	}
	delete(b.subs, s)
	s.closeLocked(ErrSubscriptionClosed)
	for i := range s.cursors {
		c := &s.cursors[i]
		if c.waiting {
			c.log.unpark(c)
		}
		c.log.subs--
		b.freeIfUnused(c.log)
	}
	s.head = nil
	if ip := s.info.ClientIP; ip != "" {
		if b.perIP[ip]--; b.perIP[ip] <= 0 {
			delete(b.perIP, ip)
		}
	}
	if s.w != nil {
		b.streams--
		if b.closed && b.streams == 0 {
			close(b.drained)
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
	var frames []*frame
	for {
		if ctx.Err() != nil {
			return clientGone(ctx)
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
func (b *Broker) write(w *Writer, frames []*frame) error {
	if len(frames) == 1 {
		return b.written(len(frames), w.writeFrames(frames[0].wire, 1))
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf, n := (*bp)[:0], 0
	for _, f := range frames {
		if len(buf)+len(f.wire) > cap(buf) && n > 0 {
			if err := b.written(n, w.writeFrames(buf, n)); err != nil {
				return err
			}
			buf, n = buf[:0], 0
		}
		if len(f.wire) > cap(buf) {
			if err := b.written(1, w.writeFrames(f.wire, 1)); err != nil {
				return err
			}
			continue
		}
		buf = append(buf, f.wire...)
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
	}
	return err
}
