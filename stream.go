package sse

import (
	"context"
	"fmt"
	"iter"
	"time"

	"github.com/gin-gonic/gin"
)

// EventNamer is implemented by values that choose their own event name when
// sent by [Stream] or [StreamSeq].
type EventNamer interface {
	EventName() string
}

// EventIDer is implemented by values that carry their own event id when sent
// by [Stream] or [StreamSeq].
type EventIDer interface {
	EventID() string
}

// Stream sends every value received from ch to the client, one flushed event
// each, until
//
//   - ch is closed: Stream returns nil;
//   - the done channel of [WithDone] is closed (server shutdown): nil;
//   - the client goes away: an error wrapping [ErrClientGone];
//   - a write fails or times out, or a value cannot be encoded: that error.
//
// An [Event] is sent as it is. Any other value becomes the Data of an event
// (so a string or []byte goes verbatim and anything else as JSON) named by
// [WithEventName], or by the value's EventName method ([EventNamer]), with
// the id from its EventID method ([EventIDer]).
//
// While ch is idle, a heartbeat comment goes out every [WithHeartbeat]
// interval (default [DefaultHeartbeat]). Stream starts no goroutine. The
// producer should stop sending when the request's context is done, since
// nobody receives from ch after Stream returns.
//
// opts override the settings of [Middleware]; without the middleware the
// headers are set with the first write.
func Stream[T any](c *gin.Context, ch <-chan T, opts ...Option) error {
	w, cfg := streamSetup(c, opts)
	if err := w.Flush(); err != nil { // headers out now: the browser fires "open"
		return err
	}
	var tick <-chan time.Time
	if cfg.heartbeat > 0 {
		t := time.NewTicker(cfg.heartbeat)
		defer t.Stop()
		tick = t.C
	}
	ctx := w.ctx
	for {
		select {
		case v, ok := <-ch:
			if !ok {
				return nil
			}
			if err := w.Send(toEvent(v, cfg.eventName)); err != nil {
				return err
			}
		case now := <-tick:
			if w.idle(now) >= cfg.heartbeat-cfg.heartbeat/10 {
				if err := w.Comment("heartbeat"); err != nil {
					return err
				}
			}
		case <-ctx.Done():
			return clientGone(ctx)
		case <-cfg.done:
			return nil
		}
	}
}

// StreamSeq sends every value of seq like [Stream], until seq ends (nil),
// the client goes away (checked between values) or a write fails. No
// heartbeats are sent while seq blocks, and a blocked seq is not
// interrupted: seq should itself watch c.Request.Context(). It suits
// finite, quickly produced sequences such as the tokens of one response.
func StreamSeq[T any](c *gin.Context, seq iter.Seq[T], opts ...Option) error {
	w, cfg := streamSetup(c, opts)
	if err := w.Flush(); err != nil { // headers out even for an empty seq
		return err
	}
	for v := range seq {
		if err := w.ctx.Err(); err != nil {
			return clientGone(w.ctx)
		}
		select {
		case <-cfg.done:
			return nil
		default:
		}
		if err := w.Send(toEvent(v, cfg.eventName)); err != nil {
			return err
		}
	}
	return nil
}

// streamSetup returns the request's writer and the stream settings: the
// writer's (from Middleware) overridden by opts.
func streamSetup(c *gin.Context, opts []Option) (*Writer, config) {
	w := GetWriter(c, opts...)
	cfg := *w.cfg
	cfg.apply(opts)
	return w, cfg
}

func clientGone(ctx context.Context) error {
	return fmt.Errorf("%w: %w", ErrClientGone, context.Cause(ctx))
}

// toEvent turns a value received by Stream into an event.
func toEvent[T any](v T, name string) Event {
	switch x := any(v).(type) {
	case Event:
		return x
	case *Event:
		if x != nil {
			return *x
		}
	}
	ev := Event{Event: name, Data: v}
	if n, ok := any(v).(EventNamer); ok {
		ev.Event = n.EventName()
	}
	if i, ok := any(v).(EventIDer); ok {
		ev.ID = i.EventID()
	}
	return ev
}

// SSEvent is gin's c.SSEvent done right: it writes one event named name
// (empty for the default "message") with data, flushes it, and returns an
// error instead of failing silently. Data follows the rules of [Event].Data.
func SSEvent(c *gin.Context, name string, data any) error {
	return GetWriter(c).Send(Event{Event: name, Data: data})
}

// Send writes ev to the request's stream and flushes it.
func Send(c *gin.Context, ev Event) error {
	return GetWriter(c).Send(ev)
}

// Comment writes a comment line to the request's stream and flushes it.
func Comment(c *gin.Context, text string) error {
	return GetWriter(c).Comment(text)
}
