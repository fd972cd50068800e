package llm

import (
	"context"
	"errors"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	sse "github.com/gin-sse/sse"
)

// Generator produces one answer: it writes deltas to out and returns nil
// when the answer is complete, or an error, which the client gets as the
// dialect's in-band error event (see [Error]). It should return soon
// after ctx is done; an Output method that fails because the client left
// returns an error wrapping sse.ErrClientGone, which the generator can
// return as it is.
type Generator func(ctx context.Context, out *Output) error

// ErrNoToolCall is returned by [Output.ToolArgs] when no tool call is open.
var ErrNoToolCall = errors.New("llm: tool-call arguments without an open tool call")

// Output receives one answer's deltas from its [Generator] and frames them
// in the stream's dialect. Text of the same kind that comes close together
// is merged (see [WithCoalesce]). Its methods are safe for concurrent use,
// but an answer's deltas are ordered only as their calls are.
type Output struct {
	mu      sync.Mutex
	cfg     *config
	enc     encoder
	sink    sink
	pending kind   // the kind of buf's text, or none
	buf     []byte // deltas waiting to be merged
	timer   *time.Timer
	err     error // the sink's error: no more is sent
	tool    string
	ended   bool
	reason  FinishReason
	res     Result
	// The answer so far, for WithOnFinish only: appended to, not copied
	// at each delta.
	text, reasoning strings.Builder
	args            []strings.Builder // of each tool call
}

type kind uint8

const (
	none kind = iota
	textKind
	reasoningKind
	argsKind
)

// sink takes an answer's events: a stream's channel or a broker topic.
type sink interface {
	emit(evs []sse.Event) error
}

func newOutput(cfg *config, enc encoder, s sink) *Output {
	return &Output{cfg: cfg, enc: enc, sink: s, res: Result{ID: enc.id()}}
}

// Text adds s to the answer's text.
func (o *Output) Text(s string) error { return o.delta(textKind, s) }

// Reasoning adds s to the model's reasoning, in the dialects that carry it
// (OpenAI Responses, Anthropic, Vercel); OpenAI Chat leaves it out.
func (o *Output) Reasoning(s string) error { return o.delta(reasoningKind, s) }

// ToolCall starts a call of the tool name with the call's id; its
// arguments follow with [Output.ToolArgs]. A call ends when anything else
// is written. An answer with tool calls finishes with [ToolCalls] unless
// [Output.SetFinishReason] says otherwise.
func (o *Output) ToolCall(id, name string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.usableLocked(); err != nil {
		return err
	}
	if err := o.flushLocked(); err != nil {
		return err
	}
	o.tool = id
	o.res.ToolCalls = append(o.res.ToolCalls, ToolCall{ID: id, Name: name})
	o.args = append(o.args, strings.Builder{})
	return o.emitLocked(o.enc.toolCall(id, name))
}

// ToolArgs adds s to the arguments (JSON text) of the open tool call.
func (o *Output) ToolArgs(s string) error { return o.delta(argsKind, s) }

// SetUsage sets the token counts the answer finishes with.
func (o *Output) SetUsage(u Usage) {
	o.mu.Lock()
	o.res.Usage = u
	o.mu.Unlock()
}

// SetFinishReason sets why the answer ends; by default [Stop], or
// [ToolCalls] when it has tool calls.
func (o *Output) SetFinishReason(r FinishReason) {
	o.mu.Lock()
	o.reason = r
	o.mu.Unlock()
}

// Flush sends the deltas waiting to be merged now.
func (o *Output) Flush() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.flushLocked()
}

func (o *Output) usableLocked() error {
	if o.ended {
		return ErrFinished
	}
	return o.err
}

func (o *Output) delta(k kind, s string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.usableLocked(); err != nil {
		return err
	}
	if s == "" {
		return nil
	}
	if k == argsKind && o.tool == "" {
		return ErrNoToolCall
	}
	if o.pending != k {
		// What waits goes first, the open tool call's arguments too.
		if err := o.flushLocked(); err != nil {
			return err
		}
		o.pending = k
	}
	keep := o.cfg.onFinish != nil
	switch k {
	case textKind:
		if keep {
			o.text.WriteString(s)
		}
		o.tool = "" // text ends a tool call
	case reasoningKind:
		if keep {
			o.reasoning.WriteString(s)
		}
		o.tool = ""
	case argsKind:
		if keep {
			o.args[len(o.args)-1].WriteString(s)
		}
	}
	o.buf = append(o.buf, s...)
	if o.cfg.delay == 0 || (o.cfg.size > 0 && len(o.buf) >= o.cfg.size) {
		return o.flushLocked()
	}
	if o.timer == nil {
		o.timer = time.AfterFunc(o.cfg.delay, o.tick)
	} else if len(o.buf) == len(s) { // the first delta waiting
		o.timer.Reset(o.cfg.delay)
	}
	return nil
}

// tick sends the deltas that waited a coalescing delay.
func (o *Output) tick() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.ended {
		_ = o.flushLocked() // the error stays in o.err for the next call
	}
}

func (o *Output) flushLocked() error {
	if o.pending == none {
		return o.err
	}
	s := string(o.buf)
	k := o.pending
	o.pending, o.buf = none, o.buf[:0]
	if o.timer != nil {
		o.timer.Stop()
	}
	var evs []sse.Event
	switch k {
	case textKind:
		evs = o.enc.text(s)
	case reasoningKind:
		evs = o.enc.reasoning(s)
	case argsKind:
		evs = o.enc.toolArgs(o.tool, s)
	}
	return o.emitLocked(evs)
}

func (o *Output) emitLocked(evs []sse.Event) error {
	if o.err == nil && len(evs) > 0 {
		o.err = o.sink.emit(evs)
	}
	return o.err
}

// run runs gen and finishes the answer: with the dialect's terminal
// events, or its error event when gen failed. It returns gen's error.
func (o *Output) run(ctx context.Context, gen Generator) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
		err = o.end(ctx, err)
	}()
	o.mu.Lock()
	_ = o.emitLocked(o.enc.start())
	o.mu.Unlock()
	return gen(ctx, o)
}

// end sends the answer's last events and reports it to WithOnFinish.
func (o *Output) end(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		err = context.Cause(ctx) // say why: the client left, a stop, a shutdown
	}
	o.mu.Lock()
	if o.ended {
		o.mu.Unlock()
		return err
	}
	_ = o.flushLocked()
	if o.timer != nil {
		o.timer.Stop()
	}
	o.ended = true
	var last []sse.Event
	switch {
	case o.err != nil:
		// Events went missing (a publish failed): the answer must not
		// end as if whole. One try to say so; for a client that left, it
		// goes nowhere.
		last = o.enc.fail(&Error{Code: "unavailable", Message: "Part of the answer could not be delivered."})
	case err == nil || errors.Is(err, ErrStopped):
		reason := o.reason
		if reason == "" {
			reason = Stop
			if len(o.res.ToolCalls) > 0 && !errors.Is(err, ErrStopped) {
				reason = ToolCalls
			}
		}
		o.res.FinishReason = reason
		last = o.enc.finish(reason, o.res.Usage)
	default:
		last = o.enc.fail(clientError(err))
	}
	if o.err != nil {
		_ = o.sink.emit(last)
		if err == nil && !errors.Is(o.err, sse.ErrClientGone) {
			err = o.err // the answer is whole, but did not get through
		}
	} else {
		_ = o.emitLocked(last)
	}
	o.res.Err = err
	o.res.Text, o.res.Reasoning = o.text.String(), o.reasoning.String()
	for i := range o.res.ToolCalls {
		o.res.ToolCalls[i].Arguments = o.args[i].String()
	}
	res := o.res
	o.mu.Unlock()
	if o.cfg.onFinish != nil {
		o.cfg.onFinish(res)
	}
	return err
}

// abort ends the answer's stream early, for a server that shuts down: the
// events it returns (the dialect's error) are the stream's last, and
// whatever the generator writes later is dropped.
func (o *Output) abort(cause error) []sse.Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil && !o.cfg.detach {
		o.err = cause
	}
	return o.enc.fail(clientError(cause))
}

// chanSink hands events to the request's sse.Stream.
type chanSink struct {
	ch     chan sse.Event
	gone   chan struct{} // closed when the stream ended
	detach bool
	err    error // why it ended; set before gone closes
}

func (s *chanSink) emit(evs []sse.Event) error {
	for _, ev := range evs {
		select {
		case s.ch <- ev:
		case <-s.gone:
			if s.detach {
				return nil // the answer runs on without a client
			}
			return s.err
		}
	}
	return nil
}
