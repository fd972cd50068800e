package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/gin-gonic/gin"

	sse "github.com/gin-sse/sse"
)

// Relay passes the event stream of resp, a provider's streamed answer, on
// to the request's client. Each event is decoded with sse.Decoder and
// written again with the core's encoder, so nothing in it can add fields
// or events of its own: its name, data (multi-line data included) and id
// arrive as a browser would have read them from the provider. Comments and
// "retry:" fields are the provider's own business and are not passed on;
// heartbeats are this server's (see sse.WithHeartbeat).
//
// resp's body is closed when Relay returns, and as soon as the stream ends
// (the client leaves, a write fails, the server shuts down), which ends
// the upstream request. A status other than 2xx
// returns an error wrapping [ErrUpstream] and writes nothing, so that on a
// POST route (whose headers sse.Middleware holds back until the first
// write) the handler can still answer with a status. Relay returns nil when the
// provider ended its stream or the server shuts down (the done channel of
// sse.WithDone closed; the client's stream then just ends), an error wrapping sse.ErrClientGone when the
// client left, or an error wrapping [ErrUpstream] when reading it failed
// (the client's stream then just ends: use [RelayAs] to tell the client
// in its dialect).
func Relay(c *gin.Context, resp *http.Response) error {
	defer resp.Body.Close()
	if err := upstreamStatus(resp); err != nil {
		return err
	}
	ch := make(chan sse.Event)
	stop, read := make(chan struct{}), make(chan struct{})
	var readErr error
	go func() {
		defer close(ch) // after read: a closed ch means readErr is set
		defer close(read)
		dec := sse.NewDecoder(resp.Body)
		id := ""
		for {
			ev, err := dec.Decode()
			if err != nil {
				readErr = err
				return
			}
			out := sse.Event{Event: ev.Event, Data: ev.Data}
			if ev.ID != id {
				id = ev.ID
				out.ID, out.ResetID = id, id == ""
			}
			select {
			case ch <- out:
			case <-stop:
				return
			}
		}
	}()
	err := sse.Stream(c, ch)
	upstreamDone := false
	select {
	case <-read:
		upstreamDone = true
	default:
	}
	close(stop)
	resp.Body.Close() // ends a read under way: the stream ended first
	<-read
	switch {
	case err != nil:
		return err
	case !upstreamDone:
		return nil // the server shuts down
	case readErr != nil && !errors.Is(readErr, io.EOF):
		return fmt.Errorf("%w: %w", ErrUpstream, readErr)
	}
	return nil
}

// RelayAs relays resp, a stream in the dialect from, to the client in the
// dialect to, as [Stream] would stream an answer of its own: with
// coalescing, heartbeats in to's form, and to's terminal marker. The
// provider's text, reasoning, tool calls, usage and finish reason carry
// over; an error event of the provider's, or a stream that ends without
// from's terminal marker, reaches the client as to's error event and is
// returned wrapping [ErrUpstream] (an error event's message is passed on
// as it is). Tool calls are relayed one after another, each with its own
// arguments: arguments of a call other than the one streaming (an
// upstream that interleaves its calls) are an [ErrUpstream] error too.
// from and to may be the same dialect, to check and re-frame a
// stream. The body is closed as Relay closes it; with [WithDetach], it is
// read to its end even when the client left (for [WithOnFinish]).
func RelayAs(c *gin.Context, resp *http.Response, from, to Dialect, opts ...Option) error {
	if err := upstreamStatus(resp); err != nil {
		resp.Body.Close()
		return err
	}
	p, err := newParser(from)
	if err != nil {
		resp.Body.Close()
		return err
	}
	cfg := newConfig(opts)
	enc, err := to.encoder(cfg)
	if err != nil {
		resp.Body.Close()
		return err
	}
	return stream(c, cfg, enc, func(ctx context.Context, out *Output) error {
		defer resp.Body.Close()
		// The generator's context ends when the stream does (the client
		// left, a write failed, a shutdown), unless detached: a read
		// under way ends then too.
		stop := context.AfterFunc(ctx, func() { resp.Body.Close() })
		defer stop()
		err := parse(resp.Body, p, out)
		if err != nil && ctx.Err() != nil {
			return ctx.Err() // we closed the body: say why (end maps it to the cause)
		}
		return err
	})
}

func upstreamStatus(resp *http.Response) error {
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%w: status %s", ErrUpstream, resp.Status)
	}
	return nil
}

// parse reads a dialect's stream from r into out, until its terminal
// marker.
func parse(r io.Reader, p parser, out *Output) error {
	dec := sse.NewDecoder(r)
	for {
		ev, err := dec.Decode()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: the stream ended before its end marker", ErrUpstream)
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUpstream, err)
		}
		end, err := p.event(ev, out)
		if err != nil || end {
			return err
		}
	}
}

// parser turns one dialect's events into Output calls.
type parser interface {
	event(ev sse.ReceivedEvent, out *Output) (end bool, err error)
}

func newParser(d Dialect) (parser, error) {
	switch d {
	case OpenAIChat:
		return &chatParser{}, nil
	case OpenAIResponses:
		return &responsesParser{}, nil
	case Anthropic:
		return &anthropicParser{}, nil
	case VercelUI:
		return vercelParser{}, nil
	}
	return nil, fmt.Errorf("%w: %d", ErrUnknownDialect, int(d))
}

// upstreamError is a provider's error event, passed on to the client.
func upstreamError(code, message string) error {
	if message == "" {
		message = "the upstream stream failed"
	}
	if code == "" {
		code = "upstream_error"
	}
	return &Error{Code: code, Message: message, Err: ErrUpstream}
}

func decode(ev sse.ReceivedEvent, v any) error {
	if err := json.Unmarshal([]byte(ev.Data), v); err != nil {
		return fmt.Errorf("%w: event %q: %w", ErrUpstream, ev.Event, err)
	}
	return nil
}

// openCall is the upstream's index of the tool call whose arguments are
// being relayed. Each dialect streams one call's arguments after another,
// and an Output has one open call: arguments of another call (an upstream
// that interleaves its calls) would land in the wrong one, so they are an
// error instead.
type openCall struct {
	index int
	set   bool
}

// start records the index of a call that begins.
func (c *openCall) start(index int) { c.index, c.set = index, true }

// args relays s, arguments of the call at index.
func (c *openCall) args(index int, s string, out *Output) error {
	if s == "" {
		return nil
	}
	if c.set && index != c.index {
		return fmt.Errorf("%w: arguments of tool call %d while call %d streams: interleaved tool calls cannot be relayed", ErrUpstream, index, c.index)
	}
	return out.ToolArgs(s)
}

type chatParser struct{ call openCall }

func (p *chatParser) event(ev sse.ReceivedEvent, out *Output) (bool, error) {
	if ev.Data == "[DONE]" {
		return true, nil
	}
	var chunk struct {
		Error *struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		} `json:"error"`
		Choices []struct {
			Delta struct {
				Content   string `json:"content"`
				ToolCalls []struct {
					Index    int    `json:"index"`
					ID       string `json:"id"`
					Function struct {
						Name      string `json:"name"`
						Arguments string `json:"arguments"`
					} `json:"function"`
				} `json:"tool_calls"`
			} `json:"delta"`
			FinishReason *string `json:"finish_reason"`
		} `json:"choices"`
		Usage *struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := decode(ev, &chunk); err != nil {
		return false, err
	}
	if chunk.Error != nil {
		return false, upstreamError(chunk.Error.Type, chunk.Error.Message)
	}
	if u := chunk.Usage; u != nil {
		out.SetUsage(Usage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens})
	}
	for _, ch := range chunk.Choices {
		if err := out.Text(ch.Delta.Content); err != nil {
			return false, err
		}
		for _, tc := range ch.Delta.ToolCalls {
			if tc.ID != "" {
				if err := out.ToolCall(tc.ID, tc.Function.Name); err != nil {
					return false, err
				}
				p.call.start(tc.Index)
			}
			if err := p.call.args(tc.Index, tc.Function.Arguments, out); err != nil {
				return false, err
			}
		}
		if ch.FinishReason != nil {
			out.SetFinishReason(FinishReason(*ch.FinishReason))
		}
	}
	return false, nil
}

type responsesParser struct{ call openCall }

func (p *responsesParser) event(ev sse.ReceivedEvent, out *Output) (bool, error) {
	var e struct {
		Type        string `json:"type"`
		Delta       string `json:"delta"`
		OutputIndex int    `json:"output_index"`
		Item        struct {
			Type   string `json:"type"`
			CallID string `json:"call_id"`
			Name   string `json:"name"`
		} `json:"item"`
		Message  string `json:"message"`
		Code     string `json:"code"`
		Response struct {
			Error *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
			IncompleteDetails *struct {
				Reason string `json:"reason"`
			} `json:"incomplete_details"`
			Usage *struct {
				InputTokens  int `json:"input_tokens"`
				OutputTokens int `json:"output_tokens"`
			} `json:"usage"`
		} `json:"response"`
	}
	if err := decode(ev, &e); err != nil {
		return false, err
	}
	switch e.Type {
	case "response.output_text.delta":
		return false, out.Text(e.Delta)
	case "response.reasoning_text.delta", "response.reasoning_summary_text.delta":
		return false, out.Reasoning(e.Delta)
	case "response.output_item.added":
		if e.Item.Type == "function_call" {
			p.call.start(e.OutputIndex)
			return false, out.ToolCall(e.Item.CallID, e.Item.Name)
		}
	case "response.function_call_arguments.delta":
		return false, p.call.args(e.OutputIndex, e.Delta, out)
	case "response.completed", "response.incomplete":
		if u := e.Response.Usage; u != nil {
			out.SetUsage(Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens})
		}
		if d := e.Response.IncompleteDetails; d != nil {
			out.SetFinishReason(Length)
			if d.Reason == "content_filter" {
				out.SetFinishReason(ContentFilter)
			}
		}
		return true, nil
	case "response.failed":
		if e.Response.Error != nil {
			return false, upstreamError(e.Response.Error.Code, e.Response.Error.Message)
		}
		return false, upstreamError("", "")
	case "error":
		return false, upstreamError(e.Code, e.Message)
	}
	return false, nil
}

type anthropicParser struct {
	usage Usage
	call  openCall
}

func (p *anthropicParser) event(ev sse.ReceivedEvent, out *Output) (bool, error) {
	var e struct {
		Type    string `json:"type"`
		Index   int    `json:"index"`
		Message struct {
			Usage struct {
				InputTokens int `json:"input_tokens"`
			} `json:"usage"`
		} `json:"message"`
		ContentBlock struct {
			Type string `json:"type"`
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"content_block"`
		Delta struct {
			Type        string `json:"type"`
			Text        string `json:"text"`
			Thinking    string `json:"thinking"`
			PartialJSON string `json:"partial_json"`
			StopReason  string `json:"stop_reason"`
		} `json:"delta"`
		Usage *struct {
			InputTokens  *int `json:"input_tokens"`
			OutputTokens int  `json:"output_tokens"`
		} `json:"usage"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := decode(ev, &e); err != nil {
		return false, err
	}
	switch e.Type {
	case "message_start":
		p.usage.InputTokens = e.Message.Usage.InputTokens
	case "content_block_start":
		if e.ContentBlock.Type == "tool_use" {
			p.call.start(e.Index)
			return false, out.ToolCall(e.ContentBlock.ID, e.ContentBlock.Name)
		}
	case "content_block_delta":
		switch e.Delta.Type {
		case "text_delta":
			return false, out.Text(e.Delta.Text)
		case "thinking_delta":
			return false, out.Reasoning(e.Delta.Thinking)
		case "input_json_delta":
			return false, p.call.args(e.Index, e.Delta.PartialJSON, out)
		}
	case "message_delta":
		if u := e.Usage; u != nil {
			p.usage.OutputTokens = u.OutputTokens
			if u.InputTokens != nil {
				p.usage.InputTokens = *u.InputTokens
			}
		}
		out.SetUsage(p.usage)
		switch e.Delta.StopReason {
		case "max_tokens":
			out.SetFinishReason(Length)
		case "tool_use":
			out.SetFinishReason(ToolCalls)
		case "refusal":
			out.SetFinishReason(ContentFilter)
		case "":
		default:
			out.SetFinishReason(Stop)
		}
	case "message_stop":
		return true, nil
	case "error":
		return false, upstreamError(e.Error.Type, e.Error.Message)
	}
	return false, nil
}

type vercelParser struct{}

func (vercelParser) event(ev sse.ReceivedEvent, out *Output) (bool, error) {
	if ev.Data == "[DONE]" {
		return true, nil
	}
	var e struct {
		Type           string `json:"type"`
		Delta          string `json:"delta"`
		ToolCallID     string `json:"toolCallId"`
		ToolName       string `json:"toolName"`
		InputTextDelta string `json:"inputTextDelta"`
		FinishReason   string `json:"finishReason"`
		ErrorText      string `json:"errorText"`
	}
	if err := decode(ev, &e); err != nil {
		return false, err
	}
	switch e.Type {
	case "text-delta":
		return false, out.Text(e.Delta)
	case "reasoning-delta":
		return false, out.Reasoning(e.Delta)
	case "tool-input-start":
		return false, out.ToolCall(e.ToolCallID, e.ToolName)
	case "tool-input-delta":
		return false, out.ToolArgs(e.InputTextDelta)
	case "finish":
		switch e.FinishReason {
		case "length":
			out.SetFinishReason(Length)
		case "tool-calls":
			out.SetFinishReason(ToolCalls)
		case "content-filter":
			out.SetFinishReason(ContentFilter)
		case "stop":
			out.SetFinishReason(Stop)
		}
	case "error":
		return false, upstreamError("", e.ErrorText)
	}
	return false, nil
}
