package llm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"

	sse "github.com/gin-sse/sse"
)

// Answers runs generations detached from any request and publishes each
// answer, framed in one dialect, to a broker topic of its own, so that
// clients follow it as an ordinary subscription: a page reloaded
// mid-answer, or a second tab, resumes it from where it was (or from its
// start) and gets every delta exactly once, on one server or, with a
// distributed backend such as Redis, on any of many.
//
// With sse.WithPresenceEvents, leave the answers' topics out of those that
// get presence events: their streams are in the dialect's format.
//
// How long an answer can be resumed is the broker's retention of its
// topic (by default 64 MiB and 5 minutes over all topics; see
// sse.WithRetention and sse.WithTopicPolicy, and the backend's for a
// distributed one).
type Answers struct {
	b      *sse.Broker
	d      Dialect
	opts   []Option
	prefix string

	mu      sync.Mutex
	running map[string]context.CancelCauseFunc
}

// NewAnswers returns answers in dialect d published on b, under topics
// "answer:<id>" (and "answer-stop:<id>" for [Answers.Stop]). opts apply to
// every answer; coalescing matters here, since each delta is one published
// event.
func NewAnswers(b *sse.Broker, d Dialect, opts ...Option) *Answers {
	return &Answers{b: b, d: d, opts: opts, prefix: "answer", running: make(map[string]context.CancelCauseFunc)}
}

// Answer is a started answer: its id, and the id of the event published
// just before its first one. A client that opens the answer's stream with
// From as its last event id (the "from" query parameter of
// [Answers.Handler]) gets it from its start.
type Answer struct {
	ID   string `json:"id"`
	From string `json:"from"`
}

// Topic returns the topic answer id is published to.
func (a *Answers) Topic(id string) string { return a.prefix + ":" + id }

func (a *Answers) stopTopic(id string) string { return a.prefix + "-stop:" + id }

// Start starts gen for the answer id (which the application chooses, say
// a random one per question) in a goroutine of its own, detached from ctx
// except for its values, and returns at once. The generation ends when gen
// returns, when [Answers.Stop] is called for id on any server sharing the
// broker's backend, or when the broker shuts down (its context's cause is
// then [ErrStopped] or [ErrShutdown]). Start returns
// [ErrAnswerExists] while an answer with this id is running on this
// server, and [ErrInvalidID] for an id that cannot be part of a topic.
func (a *Answers) Start(ctx context.Context, id string, gen Generator) (Answer, error) {
	if id == "" || len(id) > 128 || strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return Answer{}, fmt.Errorf("%w: %q (1 to 128 bytes, no control characters)", ErrInvalidID, id)
	}
	cfg := newConfig(a.opts)
	cfg.detach = true
	enc, err := a.d.encoder(cfg)
	if err != nil {
		return Answer{}, err
	}
	gctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	a.mu.Lock()
	if _, ok := a.running[id]; ok {
		a.mu.Unlock()
		cancel(nil)
		return Answer{}, fmt.Errorf("%w: %q", ErrAnswerExists, id)
	}
	a.running[id] = cancel
	a.mu.Unlock()
	started := false
	defer func() {
		if !started {
			a.forget(id)
			cancel(nil)
		}
	}()
	// Stop may come from another server: it is an event on a topic.
	stopSub, err := a.b.Subscribe(gctx, []string{a.stopTopic(id)}, "")
	if err != nil {
		return Answer{}, err
	}
	// An event with no data, which clients do not dispatch, marks the
	// answer's start: replaying after it gives the whole answer.
	from, err := a.b.Publish(ctx, a.Topic(id), sse.Event{Comment: "answer " + id})
	if err != nil {
		stopSub.Close()
		return Answer{}, err
	}
	started = true
	go func() {
		for {
			ev, err := stopSub.Next()
			switch {
			case errors.Is(err, sse.ErrBrokerClosed):
				cancel(ErrShutdown)
				return
			case err != nil:
				return // the answer ended (gctx)
			case ev.Event == stopEvent:
				cancel(ErrStopped)
			}
		}
	}()
	s := &topicSink{b: a.b, ctx: context.WithoutCancel(gctx), topic: a.Topic(id)}
	out := newOutput(cfg, enc, s)
	go func() {
		defer a.forget(id)
		defer cancel(nil)
		defer stopSub.Close()
		_ = out.run(gctx, gen)
	}()
	return Answer{ID: id, From: from}, nil
}

func (a *Answers) forget(id string) {
	a.mu.Lock()
	delete(a.running, id)
	a.mu.Unlock()
}

// Stop stops the answer id, wherever it runs: its generator's context is
// cancelled with the cause [ErrStopped], and the answer finishes normally
// with what it had (finish reason [Stop]), so that its clients see a
// complete stream.
func (a *Answers) Stop(ctx context.Context, id string) error {
	a.mu.Lock()
	cancel, ok := a.running[id]
	a.mu.Unlock()
	if ok {
		cancel(ErrStopped)
		return nil
	}
	_, err := a.b.Publish(ctx, a.stopTopic(id), sse.Event{Event: stopEvent, Data: id})
	return err
}

// stopEvent names the event that stops an answer on its stop topic.
const stopEvent = "stop"

// Handler streams the answer whose id is the route parameter param, as
// broker.Handler does for its topic: a reconnecting client resumes with
// its Last-Event-ID, and a client that opens it with the query parameter
// "from" set to [Answer].From gets it from its start. opts apply as they
// do to broker.Handler.
func (a *Answers) Handler(param string, opts ...sse.HandlerOption) gin.HandlerFunc {
	topics := func(c *gin.Context) ([]string, error) {
		id := c.Param(param)
		if id == "" {
			return nil, fmt.Errorf("%w: no answer id in the route parameter %q", sse.ErrNoTopics, param)
		}
		return []string{a.Topic(id)}, nil
	}
	var headers [][2]string
	if enc, err := a.d.encoder(newConfig(nil)); err == nil {
		headers = enc.headers()
	}
	h := a.b.Handler(topics, append([]sse.HandlerOption{sse.WithLastEventIDQuery("from")}, opts...)...)
	return func(c *gin.Context) {
		for _, kv := range headers {
			c.Header(kv[0], kv[1])
		}
		h(c)
	}
}

// topicSink publishes an answer's events to its topic.
type topicSink struct {
	b     *sse.Broker
	ctx   context.Context // the generation's values, never cancelled: an answer is published to its end
	topic string
}

func (s *topicSink) emit(evs []sse.Event) error {
	for _, ev := range evs {
		if _, err := s.b.Publish(s.ctx, s.topic, ev); err != nil {
			return err
		}
	}
	return nil
}
