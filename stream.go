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
//   - ch is closed: Stream returns nil (or, when the client left meanwhile,
//     an error wrapping [ErrClientGone]: a producer that watches the
//     request's context closes ch because of it);
//   - the done channel of [WithDone] is closed (server shutdown): nil;
//   - the client goes away: an error wrapping [ErrClientGone];
//   - a write fails or times out, or a value cannot be encoded: that error.
//
// An [Event] is sent as it is. Any other value becomes the Data of an event
// (so a string or []byte goes verbatim and anything else as JSON) named by
// [WithEventName], or by the value's EventName method ([EventNamer]), with
// the id from its EventID method ([EventIDer]).
//
// While ch is idle, a heartbeat comment (or the event of
// [WithHeartbeatEvent]) goes out every [WithHeartbeat] interval (default
// [DefaultHeartbeat]). Stream starts no goroutine. The
// producer should stop sending when the request's context is done, since
// nobody receives from ch after Stream returns.
//
// The connection's settings (heartbeat, write timeout, done channel) are
// those given to the [Middleware] in front, or the defaults without one.
func Stream[T any](c *gin.Context, ch <-chan T, opts ...StreamOption) error {
	w := WriterFrom(c)
	var vc valueConfig
	for _, o := range opts {
		if o != nil {
			o.applyStream(&vc)
		}
	}
	var beat []byte // the heartbeat event, encoded once
	if ev := vc.heartbeat; ev != nil {
		var err error
		if beat, err = ev.AppendTo(nil); err != nil {
			return fmt.Errorf("sse: heartbeat event: %w", err)
		}
	}
	if err := w.open(); err != nil { // headers out now: the browser fires "open"
		return err
	}
	cfg := w.config()
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
				if ctx.Err() != nil {
					return clientGone(ctx)
				}
				return nil
			}
			if err := w.Send(toEvent(v, vc.eventName)); err != nil {
				return err
			}
		case now := <-tick:
			if w.idle(now) >= cfg.heartbeat-cfg.heartbeat/10 {
				if err := heartbeat(w, beat); err != nil {
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

// StreamSeq sends every value of seq like [Stream], with the same
// heartbeats and the same ends: nil when seq ends or the done channel of
// [WithDone] closes, an error wrapping [ErrClientGone] when the client left
// (even when seq ended because of it), or the write's error. It suits the
// tokens of one answer from a language model: heartbeats keep proxies from
// cutting the stream while seq blocks, waiting for the model.
//
// seq runs in a goroutine of its own, so that a blocked seq does not hold
// up heartbeats or the end of the stream. seq should watch the request's
// context and return soon after it is done; once StreamSeq stops reading,
// seq's yield returns false. StreamSeq returns only after seq has returned,
// so no goroutine outlives the request.
func StreamSeq[T any](c *gin.Context, seq iter.Seq[T], opts ...StreamOption) error {
	ch := make(chan T)
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		defer close(ch)
		for v := range seq {
			select {
			case ch <- v:
			case <-stop:
				return
			}
		}
	}()
	err := Stream(c, ch, opts...)
	close(stop)
	<-finished
	return err
}

// heartbeat writes beat, an encoded event, or a heartbeat comment when
// beat is nil.
func heartbeat(w *Writer, beat []byte) error {
	if beat != nil {
		return w.writeFrames(beat, 1)
	}
	return w.Comment("heartbeat")
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
	return WriterFrom(c).Send(Event{Event: name, Data: data})
}

// Send writes ev to the request's stream and flushes it.
func Send(c *gin.Context, ev Event) error {
	return WriterFrom(c).Send(ev)
}

// Comment writes a comment line to the request's stream and flushes it.
func Comment(c *gin.Context, text string) error {
	return WriterFrom(c).Comment(text)
}
