package llm

import (
	"context"

	"github.com/gin-gonic/gin"

	sse "github.com/gin-sse/sse"
)

// Stream streams the answer gen writes to the request's client in dialect
// d. It sends the headers at once (and the dialect's own, such as the
// Vercel stream's), runs gen in a goroutine with a context of its own, and
// writes each delta as gen produces it, merged as [WithCoalesce] says.
// While gen is quiet, heartbeats go out at the connection's heartbeat
// interval (sse.WithHeartbeat on the middleware; default
// sse.DefaultHeartbeat): a comment, or Anthropic's "ping" event.
//
// Stream returns when the answer is complete, with gen's error (which the
// client got as the dialect's in-band error event) or nil. When the client
// leaves first it returns an error wrapping sse.ErrClientGone; by default
// gen's context is then cancelled (with that error as its cause) and
// Stream waits for gen to return, so that no goroutine outlives the
// request. With [WithDetach] gen runs on to its end instead, and Stream
// returns at once. When the server shuts down (the done channel of
// sse.WithDone closes), the client gets the dialect's error event with the
// code "unavailable" and Stream returns [ErrShutdown]; gen's context is
// cancelled unless the answer is detached.
//
// It works on a POST route whose handler read a JSON body first: the
// middleware holds a POST stream's headers back until the first write, so
// the handler can still refuse a bad request with a status of its own.
// Read the body to its end before calling Stream (c.ShouldBindJSON does):
// net/http notices a client that leaves only once the request body has
// been read, and until then only a failed write tells.
func Stream(c *gin.Context, d Dialect, gen Generator, opts ...Option) error {
	cfg := newConfig(opts)
	enc, err := d.encoder(cfg)
	if err != nil {
		return err
	}
	return stream(c, cfg, enc, gen)
}

func stream(c *gin.Context, cfg *config, enc encoder, gen Generator) error {
	for _, h := range enc.headers() {
		c.Header(h[0], h[1])
	}
	s := &chanSink{ch: make(chan sse.Event, 16), gone: make(chan struct{}), detach: cfg.detach}
	out := newOutput(cfg, enc, s)
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(c.Request.Context()))
	finished := make(chan struct{})
	var genErr error
	go func() {
		defer close(s.ch) // after finished: a closed channel means gen returned
		defer close(finished)
		defer cancel(nil)
		genErr = out.run(ctx, gen)
	}()
	var hb []sse.StreamOption
	if ev := enc.heartbeat(); ev != nil {
		hb = append(hb, sse.WithHeartbeatEvent(*ev))
	}
	err := sse.Stream(c, s.ch, hb...)
	select {
	case <-finished:
		if err == nil {
			// Stream may have ended on a shutdown just as the answer
			// did: what it had not sent yet goes now (nothing, when it
			// ended with the channel).
			for ev := range s.ch {
				if sse.Send(c, ev) != nil {
					break
				}
			}
			return genErr
		}
	default:
	}
	shutdown := err == nil
	if shutdown {
		err = ErrShutdown
	}
	s.err = err
	close(s.gone)
	if shutdown {
		for _, ev := range out.abort(err) {
			if sse.Send(c, ev) != nil {
				break
			}
		}
	}
	if cfg.detach {
		return err
	}
	cancel(err)
	<-finished
	return err
}
