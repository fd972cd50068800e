package llm

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	sse "github.com/gin-sse/sse"
)

// Dialect is a wire format of streamed answers.
type Dialect int

const (
	// OpenAIChat is OpenAI's Chat Completions stream: "data:" lines of
	// chat.completion.chunk objects with no "event:" field, an optional
	// usage chunk (WithUsageChunk) and "data: [DONE]". Its in-band error
	// is a data line {"error": {...}}, which the OpenAI SDKs raise as an
	// error. It has no reasoning field: Reasoning deltas are left out.
	OpenAIChat Dialect = iota + 1
	// OpenAIResponses is OpenAI's Responses stream: named events
	// (response.created, response.output_text.delta, ...,
	// response.completed) with a sequence_number. A failure ends it with
	// response.failed, whose response carries the error.
	OpenAIResponses
	// Anthropic is Anthropic's Messages stream: message_start,
	// content_block_start/_delta/_stop, message_delta, message_stop, with
	// "ping" events as heartbeats and an "error" event on failure.
	Anthropic
	// VercelUI is the Vercel AI SDK's UI message stream, version 1 (the
	// x-vercel-ai-ui-message-stream: v1 header): start, text-start/
	// text-delta/text-end, reasoning and tool-input parts, finish and
	// "data: [DONE]"; a failure sends an "error" part before [DONE].
	// It carries no token usage.
	VercelUI
)

// String returns the dialect's name: "openai-chat", "openai-responses",
// "anthropic" or "vercel-ui".
func (d Dialect) String() string {
	switch d {
	case OpenAIChat:
		return "openai-chat"
	case OpenAIResponses:
		return "openai-responses"
	case Anthropic:
		return "anthropic"
	case VercelUI:
		return "vercel-ui"
	}
	return "Dialect(" + strconv.Itoa(int(d)) + ")"
}

// encoder frames one answer in a dialect. Its methods return the events
// to send, in order; it is used by one goroutine at a time.
type encoder interface {
	id() string
	headers() [][2]string
	heartbeat() *sse.Event // nil: a comment
	start() []sse.Event
	text(s string) []sse.Event
	reasoning(s string) []sse.Event
	toolCall(id, name string) []sse.Event
	toolArgs(id, s string) []sse.Event
	finish(r FinishReason, u Usage) []sse.Event
	fail(e *Error) []sse.Event
}

func (d Dialect) encoder(cfg *config) (encoder, error) {
	switch d {
	case OpenAIChat:
		return &chatEncoder{cfg: cfg, msgID: cfg.idOr("chatcmpl-"), created: time.Now().Unix()}, nil
	case OpenAIResponses:
		return &responsesEncoder{cfg: cfg, msgID: cfg.idOr("resp_"), created: time.Now().Unix()}, nil
	case Anthropic:
		return &anthropicEncoder{cfg: cfg, msgID: cfg.idOr("msg_"), index: -1}, nil
	case VercelUI:
		return &vercelEncoder{msgID: cfg.idOr("msg-")}, nil
	}
	return nil, fmt.Errorf("%w: %d", ErrUnknownDialect, int(d))
}

// event returns a named event whose data is v as JSON.
func event(name string, v any) sse.Event {
	b, err := json.Marshal(v)
	if err != nil { // only the package's own types get here
		panic(fmt.Sprintf("llm: encoding %T: %v", v, err))
	}
	return sse.Event{Event: name, Data: b}
}

// done is the "data: [DONE]" terminal marker.
var done = sse.Event{Data: "[DONE]"}

// ---- OpenAI Chat Completions ----

type chatEncoder struct {
	cfg     *config
	msgID   string
	created int64
	tools   map[string]int // tool call id -> index
}

type chatChunk struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   *chatUsage   `json:"usage,omitempty"`
}

type chatChoice struct {
	Index        int       `json:"index"`
	Delta        chatDelta `json:"delta"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

type chatDelta struct {
	Role      string     `json:"role,omitempty"`
	Content   *string    `json:"content,omitempty"`
	ToolCalls []chatTool `json:"tool_calls,omitempty"`
}

type chatTool struct {
	Index    int    `json:"index"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type chatUsage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	TotalTokens         int `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"completion_tokens_details"`
}

func (e *chatEncoder) id() string                   { return e.msgID }
func (e *chatEncoder) headers() [][2]string         { return nil }
func (e *chatEncoder) heartbeat() *sse.Event        { return nil }
func (e *chatEncoder) reasoning(string) []sse.Event { return nil }

func (e *chatEncoder) chunk(d chatDelta, finish *string) []sse.Event {
	return []sse.Event{event("", chatChunk{
		ID: e.msgID, Object: "chat.completion.chunk", Created: e.created, Model: e.cfg.model,
		Choices: []chatChoice{{Delta: d, FinishReason: finish}},
	})}
}

func (e *chatEncoder) start() []sse.Event {
	empty := ""
	return e.chunk(chatDelta{Role: "assistant", Content: &empty}, nil)
}

func (e *chatEncoder) text(s string) []sse.Event { return e.chunk(chatDelta{Content: &s}, nil) }

func (e *chatEncoder) toolCall(id, name string) []sse.Event {
	if e.tools == nil {
		e.tools = make(map[string]int)
	}
	t := chatTool{Index: len(e.tools), ID: id, Type: "function"}
	e.tools[id] = t.Index
	t.Function.Name = name
	return e.chunk(chatDelta{ToolCalls: []chatTool{t}}, nil)
}

func (e *chatEncoder) toolArgs(id, s string) []sse.Event {
	t := chatTool{Index: e.tools[id]}
	t.Function.Arguments = s
	return e.chunk(chatDelta{ToolCalls: []chatTool{t}}, nil)
}

func (e *chatEncoder) finish(r FinishReason, u Usage) []sse.Event {
	reason := string(r)
	evs := e.chunk(chatDelta{}, &reason)
	if e.cfg.usageChunk {
		cu := &chatUsage{PromptTokens: u.InputTokens, CompletionTokens: u.OutputTokens, TotalTokens: u.InputTokens + u.OutputTokens}
		cu.PromptTokensDetails.CachedTokens = u.CachedTokens
		cu.CompletionTokensDetails.ReasoningTokens = u.ReasoningTokens
		evs = append(evs, event("", chatChunk{
			ID: e.msgID, Object: "chat.completion.chunk", Created: e.created, Model: e.cfg.model,
			Choices: []chatChoice{}, Usage: cu,
		}))
	}
	return append(evs, done)
}

func (e *chatEncoder) fail(err *Error) []sse.Event {
	return []sse.Event{event("", map[string]any{"error": map[string]any{
		"message": err.Message, "type": err.Code, "param": nil, "code": err.Code,
	}})}
}

// ---- OpenAI Responses ----

type responsesEncoder struct {
	cfg     *config
	msgID   string
	created int64
	seq     int
	items   []map[string]any // the output so far
	cur     map[string]any   // the open item, or nil
	buf     []byte           // the open item's text or arguments
}

func (e *responsesEncoder) id() string            { return e.msgID }
func (e *responsesEncoder) headers() [][2]string  { return nil }
func (e *responsesEncoder) heartbeat() *sse.Event { return nil }

// ev returns the event typ with fields and the next sequence number.
func (e *responsesEncoder) ev(typ string, fields map[string]any) sse.Event {
	fields["type"] = typ
	fields["sequence_number"] = e.seq
	e.seq++
	return event(typ, fields)
}

func (e *responsesEncoder) response(status string, u *Usage) map[string]any {
	output := e.items
	if output == nil {
		output = []map[string]any{}
	}
	r := map[string]any{
		"id": e.msgID, "object": "response", "created_at": e.created, "status": status,
		"model": e.cfg.model, "output": output, "error": nil, "incomplete_details": nil,
		"parallel_tool_calls": true, "tool_choice": "auto", "tools": []any{}, "usage": nil,
	}
	if u != nil {
		r["usage"] = map[string]any{
			"input_tokens": u.InputTokens, "output_tokens": u.OutputTokens,
			"total_tokens":          u.InputTokens + u.OutputTokens,
			"input_tokens_details":  map[string]any{"cached_tokens": u.CachedTokens},
			"output_tokens_details": map[string]any{"reasoning_tokens": u.ReasoningTokens},
		}
	}
	return r
}

func (e *responsesEncoder) start() []sse.Event {
	return []sse.Event{
		e.ev("response.created", map[string]any{"response": e.response("in_progress", nil)}),
		e.ev("response.in_progress", map[string]any{"response": e.response("in_progress", nil)}),
	}
}

// open starts an item of typ unless one is open (for text and
// reasoning, whose items continue).
func (e *responsesEncoder) open(typ string, item map[string]any) []sse.Event {
	if e.cur != nil && e.cur["type"] == typ && typ != "function_call" {
		return nil
	}
	evs := e.close()
	item["type"] = typ
	e.cur, e.buf = item, e.buf[:0]
	evs = append(evs, e.ev("response.output_item.added", map[string]any{"output_index": len(e.items), "item": item}))
	switch typ {
	case "message":
		evs = append(evs, e.ev("response.content_part.added", map[string]any{
			"item_id": item["id"], "output_index": len(e.items), "content_index": 0,
			"part": map[string]any{"type": "output_text", "text": "", "annotations": []any{}},
		}))
	case "reasoning":
		evs = append(evs, e.ev("response.content_part.added", map[string]any{
			"item_id": item["id"], "output_index": len(e.items), "content_index": 0,
			"part": map[string]any{"type": "reasoning_text", "text": ""},
		}))
	}
	return evs
}

// close ends the open item, if any.
func (e *responsesEncoder) close() []sse.Event {
	it := e.cur
	if it == nil {
		return nil
	}
	e.cur = nil
	idx := len(e.items)
	text := string(e.buf)
	var evs []sse.Event
	switch it["type"] {
	case "message":
		part := map[string]any{"type": "output_text", "text": text, "annotations": []any{}}
		evs = append(evs,
			e.ev("response.output_text.done", map[string]any{"item_id": it["id"], "output_index": idx, "content_index": 0, "text": text, "logprobs": []any{}}),
			e.ev("response.content_part.done", map[string]any{"item_id": it["id"], "output_index": idx, "content_index": 0, "part": part}))
		it = map[string]any{"id": it["id"], "type": "message", "status": "completed", "role": "assistant", "content": []any{part}}
	case "reasoning":
		part := map[string]any{"type": "reasoning_text", "text": text}
		evs = append(evs,
			e.ev("response.reasoning_text.done", map[string]any{"item_id": it["id"], "output_index": idx, "content_index": 0, "text": text}),
			e.ev("response.content_part.done", map[string]any{"item_id": it["id"], "output_index": idx, "content_index": 0, "part": part}))
		it = map[string]any{"id": it["id"], "type": "reasoning", "summary": []any{}, "content": []any{part}}
	case "function_call":
		evs = append(evs, e.ev("response.function_call_arguments.done", map[string]any{"item_id": it["id"], "output_index": idx, "name": it["name"], "arguments": text}))
		it = map[string]any{"id": it["id"], "type": "function_call", "status": "completed", "call_id": it["call_id"], "name": it["name"], "arguments": text}
	}
	e.items = append(e.items, it)
	return append(evs, e.ev("response.output_item.done", map[string]any{"output_index": idx, "item": it}))
}

func (e *responsesEncoder) text(s string) []sse.Event {
	evs := e.open("message", map[string]any{"id": newID("msg_"), "status": "in_progress", "role": "assistant", "content": []any{}})
	e.buf = append(e.buf, s...)
	return append(evs, e.ev("response.output_text.delta", map[string]any{
		"item_id": e.cur["id"], "output_index": len(e.items), "content_index": 0, "delta": s, "logprobs": []any{},
	}))
}

func (e *responsesEncoder) reasoning(s string) []sse.Event {
	evs := e.open("reasoning", map[string]any{"id": newID("rs_"), "summary": []any{}})
	e.buf = append(e.buf, s...)
	return append(evs, e.ev("response.reasoning_text.delta", map[string]any{
		"item_id": e.cur["id"], "output_index": len(e.items), "content_index": 0, "delta": s,
	}))
}

func (e *responsesEncoder) toolCall(id, name string) []sse.Event {
	return e.open("function_call", map[string]any{"id": newID("fc_"), "status": "in_progress", "call_id": id, "name": name, "arguments": ""})
}

func (e *responsesEncoder) toolArgs(id, s string) []sse.Event {
	if e.cur == nil || e.cur["call_id"] != id {
		return nil // Output only sends arguments of the open call
	}
	e.buf = append(e.buf, s...)
	return []sse.Event{e.ev("response.function_call_arguments.delta", map[string]any{
		"item_id": e.cur["id"], "output_index": len(e.items), "delta": s,
	})}
}

func (e *responsesEncoder) finish(r FinishReason, u Usage) []sse.Event {
	evs := e.close()
	switch r {
	case Length, ContentFilter:
		reason := "max_output_tokens"
		if r == ContentFilter {
			reason = "content_filter"
		}
		resp := e.response("incomplete", &u)
		resp["incomplete_details"] = map[string]any{"reason": reason}
		return append(evs, e.ev("response.incomplete", map[string]any{"response": resp}))
	}
	return append(evs, e.ev("response.completed", map[string]any{"response": e.response("completed", &u)}))
}

func (e *responsesEncoder) fail(err *Error) []sse.Event {
	e.cur = nil
	resp := e.response("failed", nil)
	resp["error"] = map[string]any{"code": err.Code, "message": err.Message}
	return []sse.Event{e.ev("response.failed", map[string]any{"response": resp})}
}

// ---- Anthropic Messages ----

type anthropicEncoder struct {
	cfg   *config
	msgID string
	index int    // the open block's index, or -1
	kind  string // the open block's type
	tool  string // the open tool_use block's id
}

var ping = sse.Event{Event: "ping", Data: `{"type": "ping"}`}

func (e *anthropicEncoder) id() string            { return e.msgID }
func (e *anthropicEncoder) headers() [][2]string  { return nil }
func (e *anthropicEncoder) heartbeat() *sse.Event { return &ping }

func (e *anthropicEncoder) start() []sse.Event {
	return []sse.Event{event("message_start", map[string]any{"type": "message_start", "message": map[string]any{
		"id": e.msgID, "type": "message", "role": "assistant", "model": e.cfg.model, "content": []any{},
		"stop_reason": nil, "stop_sequence": nil, "usage": map[string]any{"input_tokens": 0, "output_tokens": 0},
	}})}
}

func (e *anthropicEncoder) open(kind, tool string, block map[string]any) []sse.Event {
	if e.index >= 0 && e.kind == kind && e.tool == tool {
		return nil
	}
	evs := e.close()
	e.index++
	e.kind, e.tool = kind, tool
	block["type"] = kind
	return append(evs, event("content_block_start", map[string]any{"type": "content_block_start", "index": e.index, "content_block": block}))
}

func (e *anthropicEncoder) close() []sse.Event {
	if e.kind == "" {
		return nil
	}
	e.kind, e.tool = "", ""
	return []sse.Event{event("content_block_stop", map[string]any{"type": "content_block_stop", "index": e.index})}
}

func (e *anthropicEncoder) delta(d map[string]any) []sse.Event {
	return []sse.Event{event("content_block_delta", map[string]any{"type": "content_block_delta", "index": e.index, "delta": d})}
}

func (e *anthropicEncoder) text(s string) []sse.Event {
	evs := e.open("text", "", map[string]any{"text": ""})
	return append(evs, e.delta(map[string]any{"type": "text_delta", "text": s})...)
}

func (e *anthropicEncoder) reasoning(s string) []sse.Event {
	evs := e.open("thinking", "", map[string]any{"thinking": "", "signature": ""})
	return append(evs, e.delta(map[string]any{"type": "thinking_delta", "thinking": s})...)
}

func (e *anthropicEncoder) toolCall(id, name string) []sse.Event {
	return e.open("tool_use", id, map[string]any{"id": id, "name": name, "input": map[string]any{}})
}

func (e *anthropicEncoder) toolArgs(id, s string) []sse.Event {
	if e.kind != "tool_use" || e.tool != id {
		return nil
	}
	return e.delta(map[string]any{"type": "input_json_delta", "partial_json": s})
}

func (e *anthropicEncoder) finish(r FinishReason, u Usage) []sse.Event {
	reason := map[FinishReason]string{Stop: "end_turn", Length: "max_tokens", ToolCalls: "tool_use", ContentFilter: "refusal"}[r]
	if reason == "" {
		reason = "end_turn"
	}
	return append(e.close(),
		event("message_delta", map[string]any{"type": "message_delta",
			"delta": map[string]any{"stop_reason": reason, "stop_sequence": nil},
			"usage": map[string]any{"input_tokens": u.InputTokens, "output_tokens": u.OutputTokens, "cache_read_input_tokens": u.CachedTokens},
		}),
		event("message_stop", map[string]any{"type": "message_stop"}))
}

func (e *anthropicEncoder) fail(err *Error) []sse.Event {
	typ := "api_error"
	switch err.Code {
	case "unavailable", "overloaded":
		typ = "overloaded_error"
	}
	return []sse.Event{event("error", map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": err.Message}})}
}

// ---- Vercel AI SDK UI message stream v1 ----

type vercelEncoder struct {
	msgID string
	n     int    // parts opened so far, for their ids
	kind  string // "text", "reasoning", "tool" or "" when none is open
	part  string // the open part's id (the tool call's id for a tool)
	name  string // the open tool call's name
	args  []byte // the open tool call's arguments
}

func (e *vercelEncoder) id() string { return e.msgID }
func (e *vercelEncoder) headers() [][2]string {
	return [][2]string{{"X-Vercel-AI-UI-Message-Stream", "v1"}}
}
func (e *vercelEncoder) heartbeat() *sse.Event { return nil }

func (e *vercelEncoder) start() []sse.Event {
	return []sse.Event{
		event("", map[string]any{"type": "start", "messageId": e.msgID}),
		event("", map[string]any{"type": "start-step"}),
	}
}

func (e *vercelEncoder) open(kind string) []sse.Event {
	if e.kind == kind {
		return nil
	}
	evs := e.close()
	e.n++
	e.kind, e.part = kind, kind+"-"+strconv.Itoa(e.n)
	return append(evs, event("", map[string]any{"type": kind + "-start", "id": e.part}))
}

func (e *vercelEncoder) close() []sse.Event {
	kind := e.kind
	e.kind = ""
	switch kind {
	case "text", "reasoning":
		return []sse.Event{event("", map[string]any{"type": kind + "-end", "id": e.part})}
	case "tool":
		args := e.args
		if len(args) == 0 {
			args = []byte("{}")
		}
		if !json.Valid(args) {
			return []sse.Event{event("", map[string]any{"type": "tool-input-error", "toolCallId": e.part, "toolName": e.name,
				"input": string(args), "errorText": "the tool call's arguments are not valid JSON"})}
		}
		return []sse.Event{event("", map[string]any{"type": "tool-input-available", "toolCallId": e.part, "toolName": e.name, "input": json.RawMessage(args)})}
	}
	return nil
}

func (e *vercelEncoder) text(s string) []sse.Event {
	evs := e.open("text")
	return append(evs, event("", map[string]any{"type": "text-delta", "id": e.part, "delta": s}))
}

func (e *vercelEncoder) reasoning(s string) []sse.Event {
	evs := e.open("reasoning")
	return append(evs, event("", map[string]any{"type": "reasoning-delta", "id": e.part, "delta": s}))
}

func (e *vercelEncoder) toolCall(id, name string) []sse.Event {
	evs := e.close()
	e.kind, e.part, e.name, e.args = "tool", id, name, e.args[:0]
	return append(evs, event("", map[string]any{"type": "tool-input-start", "toolCallId": id, "toolName": name}))
}

func (e *vercelEncoder) toolArgs(id, s string) []sse.Event {
	if e.kind != "tool" || e.part != id {
		return nil
	}
	e.args = append(e.args, s...)
	return []sse.Event{event("", map[string]any{"type": "tool-input-delta", "toolCallId": id, "inputTextDelta": s})}
}

func (e *vercelEncoder) finish(r FinishReason, _ Usage) []sse.Event {
	reason := map[FinishReason]string{Stop: "stop", Length: "length", ToolCalls: "tool-calls", ContentFilter: "content-filter"}[r]
	if reason == "" {
		reason = "other"
	}
	return append(e.close(),
		event("", map[string]any{"type": "finish-step"}),
		event("", map[string]any{"type": "finish", "finishReason": reason}),
		done)
}

func (e *vercelEncoder) fail(err *Error) []sse.Event {
	e.kind = ""
	return []sse.Event{event("", map[string]any{"type": "error", "errorText": err.Message}), done}
}
