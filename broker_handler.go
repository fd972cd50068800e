package sse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"
)

// TopicsFunc tells [Broker.Handler] which topics a request subscribes to.
// An error refuses the request with 400, or with the status of a
// [*StatusError].
type TopicsFunc func(c *gin.Context) ([]string, error)

// TopicsFromQuery subscribes to every value of the query parameter name,
// as in /events?topic=a&topic=b. A query that does not parse (a malformed
// escape, a semicolon, more than 10,000 parameters) is refused with 400
// rather than read in part.
func TopicsFromQuery(name string) TopicsFunc {
	return func(c *gin.Context) ([]string, error) {
		var raw string
		if c.Request != nil && c.Request.URL != nil {
			raw = c.Request.URL.RawQuery
		}
		q, err := url.ParseQuery(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: the query does not parse: %w", ErrInvalidTopic, err)
		}
		topics := q[name]
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
// topics from topics. It does the work of [Middleware] itself, after its
// own checks, so that it can still refuse a request. Refusals are JSON
// {"error": "..."} with:
//
//   - 400 for missing or invalid topics, 404 for topics outside [WithTopics];
//   - 403, 401 or a [*StatusError]'s status when [WithAuthorize]'s hook
//     refuses;
//   - 503 with Retry-After beyond [WithMaxSubscribers] or after Shutdown;
//   - 429 with Retry-After beyond [WithMaxPerIP];
//   - 406 and 500 as [Middleware] does.
//
// When the backend cannot replay what a reconnecting client missed
// ([ErrReplayFailed]), the answer is a stream holding only a "retry:"
// field (the Retry-After delay), so that the client comes back later with
// the same Last-Event-ID instead of giving up.
//
// With a [Backend], a stream on several topics gets ids that hold its
// position in each of them ("<sum of the topics>:<id>,<id>,...", topics in
// sorted order), since a backend orders events per topic; a stream on one
// topic gets the events' own ids.
//
// A client that reconnects with Last-Event-ID first gets the events it
// missed on its topics, then the live ones. When they cannot be replayed
// it gets the [HeaderEventsLost] header and the [LostEventName] event
// first. A client with nothing to resume from gets the events of
// [WithInitialEvents] (such as the current state) before the live ones.
//
// A [Middleware] in front is not needed. With one (say, on a route group),
// its settings apply and the stream options given here override them for
// this route: a "retry:" field, a heartbeat, a write timeout, a done
// channel and where the Last-Event-ID is read all take effect on the
// stream the middleware opened. An Accept check ([WithRequireAccept]) that
// fails on such a stream ends it with [ErrNotAcceptable] (recorded in
// c.Errors) before any event, since its status was sent already; so do the
// other refusals. To refuse with a status, leave the middleware out of the
// broker's routes (on a POST route, it waits for the first write).
//
// A stream ends as soon as its client leaves, its done channel closes or
// the broker shuts down, even when it has nothing to write.
func (b *Broker) Handler(topics TopicsFunc, opts ...HandlerOption) gin.HandlerFunc {
	hc := handlerConfig{stream: defaultStreamConfig()}
	for _, o := range opts {
		if o != nil {
			o.applyHandler(&hc)
		}
	}
	return func(c *gin.Context) {
		ts, err := topics(c)
		if err == nil {
			ts, err = b.checkTopics(ts, b.cfg.maxTopics)
		}
		if err != nil {
			refuse(c, b.statusOf(err, http.StatusBadRequest), err)
			return
		}
		if hc.authorize != nil {
			if err := hc.authorize(c, ts); err != nil {
				err = refusal(err)
				refuse(c, b.statusOf(err, http.StatusForbidden), err)
				return
			}
		}
		w, cfg, ok := b.writer(c, &hc)
		if !ok {
			return
		}
		ctx, ip := context.Background(), ""
		if c.Request != nil {
			ctx = c.Request.Context()
			if b.cfg.needsIP() {
				ip = b.cfg.clientIP(c)
			}
		}
		lastID := readLastEventID(c.Request, cfg.lastEventIDQuery)
		var initial func([]string) ([]Event, error)
		if fn := hc.initialEvents; fn != nil {
			initial = func(topics []string) ([]Event, error) { return fn(c, topics) }
		}
		info := SubscriberInfo{Topics: ts, ClientIP: ip, LastEventID: lastID}
		if fn := b.cfg.identify; fn != nil {
			info.User, info.UserInfo = fn(c)
		}
		s, lost, err := b.subscribe(ctx, info, w, initial)
		if errors.Is(err, ErrReplayFailed) {
			// An error status would end a browser's EventSource for good:
			// answer with a stream that asks it to come back later with
			// the same Last-Event-ID.
			_ = c.Error(err)
			if w.open() == nil {
				_ = w.Send(Event{Comment: "replay unavailable, retry later", Retry: max(b.cfg.retryAfter, time.Second)})
			}
			w.finish()
			return
		}
		if err != nil {
			status := b.statusOf(err, http.StatusInternalServerError)
			if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
				c.Header("Retry-After", b.retryAfterHeader())
			}
			refuse(c, status, err)
			return
		}
		var end error // why the stream ended
		defer func() { b.remove(s, end) }()
		if lost != nil && !w.isStarted() {
			c.Header(HeaderEventsLost, LostReason(lost))
		}
		defer w.finish()
		if end = w.open(); end != nil {
			_ = c.Error(end)
			return
		}
		// serve ends only with an error; a client that left, a shutdown and
		// the done channel are how streams normally end.
		end = b.serve(ctx, w, s)
		switch {
		case errors.Is(end, errStopped):
			end = nil
		case !errors.Is(end, ErrClientGone) && !errors.Is(end, ErrBrokerClosed):
			_ = c.Error(end)
		}
	}
}

// writer returns the Writer of a stream of the handler and its settings:
// the Writer of a Middleware in front, with the handler's stream options
// applied over the middleware's, or a new one. On refusal it answers the
// request and returns false.
func (b *Broker) writer(c *gin.Context, hc *handlerConfig) (*Writer, *streamConfig, bool) {
	w, ok := existingWriter(c)
	if !ok {
		if !checkStream(c, &hc.stream) {
			return nil, nil, false
		}
		return newWriter(c.Writer, c.Request, &hc.stream), &hc.stream, true
	}
	cfg := w.config()
	if len(hc.streamOpts) > 0 {
		merged := handlerConfig{stream: *cfg}
		for _, o := range hc.streamOpts {
			o.applyHandler(&merged)
		}
		cfg = &merged.stream
		w.setConfig(cfg)
	}
	if !w.isStarted() {
		return w, cfg, checkStream(c, cfg)
	}
	if cfg.requireAccept && c.Request != nil && !acceptsEventStream(c.Request.Header.Values("Accept")) {
		_ = c.Error(ErrNotAcceptable)
		c.Abort()
		return nil, nil, false
	}
	if cfg.retry > 0 {
		if err := w.writeFrames(w.appendRetry(nil), 0); err != nil {
			_ = c.Error(err)
			return nil, nil, false
		}
	}
	return w, cfg, true
}

// refuse answers status with a JSON error, or, when a Middleware in front
// sent the stream's headers already, ends the stream with err in c.Errors
// (no error can be written into an event stream).
func refuse(c *gin.Context, status int, err error) {
	if w, ok := existingWriter(c); ok && w.isStarted() {
		_ = c.Error(err)
		c.Abort()
		return
	}
	abortJSON(c, status, err)
}

// refusal wraps an error of the authorize hook with the sentinel of its
// status: ErrUnauthorized for 401, ErrForbidden for 403 (the default).
func refusal(err error) error {
	var se *StatusError
	status := http.StatusForbidden
	if errors.As(err, &se) {
		status = se.StatusCode
	}
	switch {
	case status == http.StatusUnauthorized && !errors.Is(err, ErrUnauthorized):
		return fmt.Errorf("%w: %w", ErrUnauthorized, err)
	case status == http.StatusForbidden && !errors.Is(err, ErrForbidden):
		return fmt.Errorf("%w: %w", ErrForbidden, err)
	}
	return err
}

// Subscription receives a broker's events in Go code. Its events are what a
// browser would get: decoded from the same bytes, the [LostEventName]
// signal included.
type Subscription struct {
	s      *stream
	lost   error
	ctx    context.Context
	todo   []ReceivedEvent
	frames [][]byte
	stop   func() bool // stops the context's AfterFunc
}

// Subscribe subscribes Go code to topics. With a lastEventID it first gets
// the events published after that id, as a reconnecting client would. The
// subscription ends when ctx is done, Close is called or the broker shuts
// down; read it with Next or Events.
func (b *Broker) Subscribe(ctx context.Context, topics []string, lastEventID string) (*Subscription, error) {
	s, lost, err := b.subscribe(ctx, SubscriberInfo{Topics: topics, LastEventID: lastEventID}, nil, nil)
	if err != nil {
		return nil, err
	}
	sub := &Subscription{s: s, lost: lost, ctx: ctx}
	sub.stop = context.AfterFunc(ctx, func() { b.remove(s, context.Cause(ctx)) })
	return sub, nil
}

// Lost returns why the events missed before the subscription could not be
// replayed (an error wrapping [ErrEventsLost]), or nil.
func (s *Subscription) Lost() error { return s.lost }

// Next returns the next event, waiting for one. It returns an error when
// the subscription's context is done, it was closed
// ([ErrSubscriptionClosed]) or the broker shut down ([ErrBrokerClosed]);
// after a close or a shutdown, the events published before are returned
// first.
func (s *Subscription) Next() (ReceivedEvent, error) {
	for len(s.todo) == 0 {
		if s.s.replaying() {
			if err := s.s.refill(s.ctx); err != nil {
				return ReceivedEvent{}, err
			}
		}
		var closed error
		s.frames, closed = s.s.take(s.frames[:0])
		if len(s.frames) > 0 {
			s.decode(s.frames)
			clear(s.frames)
			break
		}
		if closed != nil {
			if errors.Is(closed, ErrSubscriptionClosed) && s.ctx.Err() != nil {
				return ReceivedEvent{}, s.ctx.Err() // closed because the context ended
			}
			return ReceivedEvent{}, closed
		}
		if s.s.replaying() {
			continue
		}
		select {
		case <-s.s.wake:
		case <-s.ctx.Done():
			s.stop()
			s.s.b.remove(s.s, context.Cause(s.ctx))
			return ReceivedEvent{}, s.ctx.Err()
		}
	}
	ev := s.todo[0]
	s.todo = s.todo[1:]
	return ev, nil
}

// Events returns the subscription's events as an iterator, as the Go
// client's Events does. It yields (event, nil) for each event, and ends
// after yielding (zero ReceivedEvent, err) with the error that ended the
// subscription (see [Subscription.Next]). Breaking out of the loop closes
// the subscription.
func (s *Subscription) Events() iter.Seq2[ReceivedEvent, error] {
	return func(yield func(ReceivedEvent, error) bool) {
		defer s.Close()
		for {
			ev, err := s.Next()
			if !yield(ev, err) || err != nil {
				return
			}
		}
	}
}

// decode queues the events of frames, as a browser would read them.
func (s *Subscription) decode(frames [][]byte) {
	var buf bytes.Buffer
	for _, wire := range frames {
		buf.Write(wire)
	}
	s.s.b.delivered.Add(uint64(len(frames)))
	if o := s.s.b.cfg.observer; o != nil {
		o.Delivered(len(frames))
	}
	dec := NewDecoder(&buf, WithMaxEventSize(0))
	for {
		ev, err := dec.Decode()
		if err != nil {
			return // the end of the frames: each one is a whole event
		}
		s.todo = append(s.todo, ev)
	}
}

// Close ends the subscription; later calls of Next return
// [ErrSubscriptionClosed] once the events already taken are read.
func (s *Subscription) Close() {
	s.stop()
	s.s.b.remove(s.s, nil)
}
