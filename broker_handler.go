package sse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// TopicsFunc tells [Broker.Handler] which topics a request subscribes to.
// An error refuses the request with 400, or with the status of a
// [*StatusError].
type TopicsFunc func(c *gin.Context) ([]string, error)

// TopicsFromQuery subscribes to every value of the query parameter name,
// as in /events?topic=a&topic=b.
func TopicsFromQuery(name string) TopicsFunc {
	return func(c *gin.Context) ([]string, error) {
		topics := c.QueryArray(name)
		if len(topics) == 0 {
			return nil, fmt.Errorf("%w: query parameter %q is missing", ErrNoTopics, name)
		}
		return topics, nil
	}
}

// TopicsFromParam subscribes to the topic in the path parameter name, as in
// r.GET("/events/:topic", ...).
func TopicsFromParam(name string) TopicsFunc {
	return func(c *gin.Context) ([]string, error) {
		t := c.Param(name)
		if t == "" {
			return nil, fmt.Errorf("%w: path parameter %q is empty", ErrNoTopics, name)
		}
		return []string{t}, nil
	}
}

// Topics subscribes every request to the same topics.
func Topics(topics ...string) TopicsFunc {
	return func(*gin.Context) ([]string, error) { return topics, nil }
}

// Handler returns a gin handler that streams the broker's events on the
// topics from topics. It does the work of [Middleware] itself (after its
// checks, so that it can still refuse a request), so do not put the
// middleware in front of it. Refusals are JSON {"error": "..."} with:
//
//   - 400 for missing or invalid topics, 404 for topics outside [WithTopics];
//   - 403 (or a [*StatusError]'s status) when [WithAuthorize]'s hook refuses;
//   - 503 with Retry-After beyond [WithMaxSubscribers] or after Shutdown;
//   - 429 with Retry-After beyond [WithMaxPerIP];
//   - 406 and 500 as [Middleware] does.
//
// When the backend cannot replay what a reconnecting client missed
// ([ErrReplayFailed]), the answer is a stream holding only a "retry:"
// field (the Retry-After delay), so that the client comes back later with
// the same Last-Event-ID instead of giving up.
//
// A client that reconnects with Last-Event-ID first gets the events it
// missed on its topics, then the live ones. When they cannot be replayed
// it gets the [HeaderEventsLost] header and the [LostEventName] event
// first. A client with nothing to resume from gets the events of
// [WithInitialEvents] (such as the current state) before the live ones.
// opts override the broker's stream options for this route (with a
// Middleware in front, its options govern the stream instead).
//
// A stream ends within 100 ms of its client leaving, even when it has
// nothing to write: the broker looks at its streams' request contexts, and
// sends their heartbeats, from one timer, instead of each stream holding a
// ticker and a wait on its context.
func (b *Broker) Handler(topics TopicsFunc, opts ...Option) gin.HandlerFunc {
	cfg := b.cfg
	cfg.apply(opts)
	return func(c *gin.Context) {
		ts, err := topics(c)
		if err == nil {
			ts, err = b.checkTopics(ts)
		}
		if err != nil {
			abortJSON(c, b.statusOf(err, http.StatusBadRequest), err)
			return
		}
		if cfg.authorize != nil {
			if err := cfg.authorize(c, ts); err != nil {
				if !errors.Is(err, ErrForbidden) {
					err = fmt.Errorf("%w: %w", ErrForbidden, err)
				}
				abortJSON(c, b.statusOf(err, http.StatusForbidden), err)
				return
			}
		}
		w, started := existingWriter(c)
		if !started && !checkStream(c, &cfg) {
			return
		}
		ctx, ip := context.Background(), ""
		if c.Request != nil {
			ctx = c.Request.Context()
			if b.cfg.needsIP() {
				ip = c.ClientIP()
			}
		}
		lastID := readLastEventID(c.Request, cfg.lastEventIDQuery)
		var initial func([]string) ([]Event, error)
		if fn := cfg.initialEvents; fn != nil {
			initial = func(topics []string) ([]Event, error) { return fn(c, topics) }
		}
		s, lost, err := b.subscribe(ctx, ts, lastID, ip, initial)
		if errors.Is(err, ErrReplayFailed) {
			// An error status would end a browser's EventSource for good:
			// answer with a stream that asks it to come back later with
			// the same Last-Event-ID.
			_ = c.Error(err)
			if !started {
				if w, started = startStream(c, &cfg, false); !started {
					return
				}
			}
			_ = w.Send(Event{Comment: "replay unavailable, retry later", Retry: max(b.cfg.retryAfter, time.Second)})
			w.finish()
			return
		}
		if err != nil {
			status := b.statusOf(err, http.StatusInternalServerError)
			if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
				c.Header("Retry-After", b.retryAfter())
			}
			abortJSON(c, status, err)
			return
		}
		defer b.remove(s, true)
		if lost != nil {
			c.Header(HeaderEventsLost, lostReason(lost))
		}
		if !started {
			var ok bool
			if w, ok = startStream(c, &cfg, false); !ok {
				return
			}
		}
		defer w.finish()
		b.attach(s, w)
		// serve ends only with an error; a client that left and a shutdown
		// are how streams normally end.
		if err := b.serve(ctx, w, s); !errors.Is(err, ErrClientGone) && !errors.Is(err, ErrBrokerClosed) {
			_ = c.Error(err)
		}
	}
}

// existingWriter returns the Writer a Middleware in front already opened.
func existingWriter(c *gin.Context) (*Writer, bool) {
	if v, ok := c.Get(writerKey); ok {
		w, ok := v.(*Writer)
		return w, ok
	}
	return nil, false
}

// Subscription receives a broker's events in Go code. Its events are what a
// browser would get: decoded from the same bytes, so Data is a string.
type Subscription struct {
	b    *Broker
	s    *subscriber
	lost error
	ctx  context.Context
	todo []Event
	stop func() bool // stops the context's AfterFunc
	once sync.Once
}

// Subscribe subscribes Go code to topics. With a lastEventID it first gets
// the events published after that id, as a reconnecting client would. The
// subscription ends when ctx is done or Close is called; read it with Next.
// Like a stream, it has a bounded queue ([WithQueueSize]): read it promptly.
func (b *Broker) Subscribe(ctx context.Context, topics []string, lastEventID string) (*Subscription, error) {
	s, lost, err := b.subscribe(ctx, topics, lastEventID, "", nil)
	if err != nil {
		return nil, err
	}
	sub := &Subscription{b: b, s: s, lost: lost, ctx: ctx}
	sub.stop = context.AfterFunc(ctx, sub.remove)
	return sub, nil
}

// Lost returns why the events missed before the subscription could not be
// replayed (an error wrapping [ErrEventsLost]), or nil.
func (s *Subscription) Lost() error { return s.lost }

// Next returns the next event, waiting for one. It returns an error when
// the subscription's context is done, it was closed, it was too slow
// ([ErrSlowSubscriber]) or the broker shut down ([ErrBrokerClosed]); the
// events queued before are returned first.
func (s *Subscription) Next() (Event, error) {
	for len(s.todo) == 0 {
		if frames := s.s.take(); len(frames) > 0 {
			if err := s.decode(frames); err != nil {
				return Event{}, err
			}
			break
		}
		if reason := s.s.kicked(); reason != nil {
			s.Close() // a slow or shut-down subscription leaves the broker
			if errors.Is(reason, ErrSubscriptionClosed) && s.ctx.Err() != nil {
				return Event{}, s.ctx.Err() // closed because the context ended
			}
			return Event{}, reason
		}
		select {
		case <-s.s.signal:
		case <-s.ctx.Done():
			s.Close()
			return Event{}, s.ctx.Err()
		}
	}
	ev := s.todo[0]
	s.todo = s.todo[1:]
	return ev, nil
}

func (s *Subscription) decode(frames []*frame) error {
	var buf bytes.Buffer
	for _, f := range frames {
		buf.Write(f.wire)
	}
	s.b.delivered.Add(uint64(len(frames)))
	dec := NewDecoder(&buf, WithMaxEventSize(0))
	for {
		ev, err := dec.Decode()
		if err != nil {
			return nil
		}
		s.todo = append(s.todo, ev)
	}
}

// Close ends the subscription; later calls of Next return
// [ErrSubscriptionClosed] once the queued events are read.
func (s *Subscription) Close() {
	s.stop()
	s.remove()
}

func (s *Subscription) remove() {
	s.once.Do(func() { s.b.remove(s.s, true) })
}
