// Package llm streams a language model's answer from a Gin handler in the
// wire format that an ecosystem's official clients parse: OpenAI Chat
// Completions, OpenAI Responses, Anthropic Messages or the Vercel AI SDK's
// UI message stream.
//
// A handler hands [Stream] a [Generator]: a function that writes the
// answer's deltas (text, reasoning, tool-call arguments) to an [Output] and
// returns nil when the answer is complete, or an error. Stream sends the
// headers at once, frames each delta as the dialect does, merges deltas
// that come close together (see [WithCoalesce]), sends heartbeats in the
// dialect's own form while the model thinks, and ends the stream with the
// dialect's terminal marker, or with its in-band error event when the
// generator fails: the 200 status is out already, so that is the only way
// a client can tell a failure from a completion.
//
//	r.POST("/v1/chat/completions", sse.Middleware(), func(c *gin.Context) {
//		var req chatRequest
//		if err := c.ShouldBindJSON(&req); err != nil {
//			c.JSON(400, gin.H{"error": err.Error()})
//			return
//		}
//		err := llm.Stream(c, llm.OpenAIChat, func(ctx context.Context, out *llm.Output) error {
//			for tok := range model.Generate(ctx, req.Messages) {
//				if err := out.Text(tok); err != nil {
//					return err // the client left
//				}
//			}
//			return ctx.Err()
//		}, llm.WithModel(req.Model))
//		if err != nil {
//			c.Error(err)
//		}
//	})
//
// [Relay] passes a provider's event stream on to the client, through the
// core's decoder and encoder, optionally re-framed into another dialect.
// [Answers] runs generations detached from any request and publishes them
// on a broker, so that a reloaded page or a second tab resumes the same
// answer with Last-Event-ID, on one server or many.
package llm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
)

// Usage is the token count of one answer.
type Usage struct {
	InputTokens     int
	OutputTokens    int
	ReasoningTokens int // part of OutputTokens, where the dialect reports it
	CachedTokens    int // part of InputTokens, where the dialect reports it
}

// FinishReason says why an answer ended. Each dialect writes it in its own
// words: [Stop] is "stop" in OpenAI Chat and the Vercel stream and
// "end_turn" in Anthropic's.
type FinishReason string

// The finish reasons of a completed answer.
const (
	Stop          FinishReason = "stop"           // the model ended its answer
	Length        FinishReason = "length"         // the token limit cut it
	ToolCalls     FinishReason = "tool_calls"     // it asks for tool calls
	ContentFilter FinishReason = "content_filter" // a filter cut it
)

// Error is an error whose message the client may see. When a generator
// fails with an error that is (or wraps) an *Error, the dialect's in-band
// error event carries its Code and Message; any other error is reported
// to the client as [DefaultErrorMessage] with the code "server_error", so
// that internal details do not leak. Stream returns the original error in
// both cases.
type Error struct {
	Code    string // "server_error" when empty
	Message string
	Err     error // the cause, for errors.Is and errors.As; not sent
}

// Error returns the message, and its cause's when it has one.
func (e *Error) Error() string {
	if e.Err != nil {
		return "llm: " + e.Message + ": " + e.Err.Error()
	}
	return "llm: " + e.Message
}

// Unwrap returns the cause, for errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Err }

// DefaultErrorMessage is what a client is told when a generator fails with
// an error that is not an [*Error].
const DefaultErrorMessage = "The server had an error while generating the answer."

var (
	// ErrStopped is the cause of a generator's context when its answer is
	// stopped with [Answers.Stop].
	ErrStopped = errors.New("llm: answer stopped")
	// ErrShutdown is the cause of a generator's context when the server
	// shuts down (the done channel of sse.WithDone closes) mid-answer.
	ErrShutdown = errors.New("llm: server shutting down")
	// ErrFinished is returned by an [Output] used after its generator
	// returned.
	ErrFinished = errors.New("llm: answer already finished")
	// ErrUpstream wraps what a relayed upstream stream did wrong: an
	// event that is not the dialect's JSON, an error event of its own or
	// an end without the dialect's terminal marker.
	ErrUpstream = errors.New("llm: upstream stream failed")
	// ErrAnswerExists is returned by [Answers.Start] for an id that is
	// still generating on this server.
	ErrAnswerExists = errors.New("llm: an answer with this id is running")
	// ErrInvalidID is returned by [Answers.Start] for an id that cannot
	// name a topic.
	ErrInvalidID = errors.New("llm: invalid answer id")
	// ErrUnknownDialect is returned for a [Dialect] value that is none of
	// the package's.
	ErrUnknownDialect = errors.New("llm: unknown dialect")
)

// PanicError is the error an answer ends with when its generator
// panicked: the client gets the dialect's error event (with
// [DefaultErrorMessage]), and the error, for errors.As, carries the
// panic's value and where it happened.
type PanicError struct {
	Value any    // what the generator panicked with
	Stack []byte // the generator's goroutine's stack, as debug.Stack gives it
}

// Error says that the generator panicked, and with what.
func (e *PanicError) Error() string { return fmt.Sprintf("llm: the generator panicked: %v", e.Value) }

// Unwrap returns the panic's value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// clientError returns what the client is told about err.
func clientError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		if e.Code == "" {
			return &Error{Code: "server_error", Message: e.Message}
		}
		return e
	}
	if errors.Is(err, ErrShutdown) {
		return &Error{Code: "unavailable", Message: "The server is shutting down; try again."}
	}
	return &Error{Code: "server_error", Message: DefaultErrorMessage}
}

// ToolCall is one call the model asks for, as [Result] reports it.
type ToolCall struct {
	ID        string
	Name      string
	Arguments string // JSON text, as the model wrote it
}

// Result is a finished answer, as [WithOnFinish] gets it.
type Result struct {
	ID           string // the answer's id in its dialect (chatcmpl-..., msg_..., ...)
	Text         string
	Reasoning    string
	ToolCalls    []ToolCall
	Usage        Usage
	FinishReason FinishReason
	// Err is the generator's error, or ErrStopped, or nil. A client that
	// left does not make it fail: with the detach policy the answer runs
	// on, and with the cancel policy the generator sees its context done.
	Err error
}

// newID returns prefix followed by 24 random hex digits.
func newID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
