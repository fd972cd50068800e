package llm

import "time"

// Default coalescing: deltas that come within DefaultCoalesceDelay of the
// first one waiting go out as one event, unless they reach
// DefaultCoalesceSize bytes first. A model writing 50 tokens a second
// (one every 20 ms) thus sends about 20 events a second, each at most
// 50 ms late.
const (
	DefaultCoalesceDelay = 50 * time.Millisecond
	DefaultCoalesceSize  = 4 << 10
)

// Option configures [Stream], [Relay] and [Answers].
type Option func(*config)

type config struct {
	model      string
	id         string
	usageChunk bool
	delay      time.Duration
	size       int
	detach     bool
	onFinish   func(Result)
}

func newConfig(opts []Option) *config {
	c := &config{delay: DefaultCoalesceDelay, size: DefaultCoalesceSize}
	for _, o := range opts {
		if o != nil {
			o(c)
		}
	}
	return c
}

// idOr returns the id of WithID, or a new one with prefix.
func (c *config) idOr(prefix string) string {
	if c.id != "" {
		return c.id
	}
	return newID(prefix)
}

// WithModel sets the model name the dialect reports.
func WithModel(name string) Option { return func(c *config) { c.model = name } }

// WithID sets the answer's id in its dialect (the chat completion's, the
// response's or the message's id); by default a random one with the
// dialect's prefix ("chatcmpl-", "resp_", "msg_", "msg-").
func WithID(id string) Option { return func(c *config) { c.id = id } }

// WithUsageChunk makes the OpenAIChat dialect send the usage chunk (an
// empty choices list and the token counts) before "data: [DONE]", as
// OpenAI does when a request asks for stream_options.include_usage. The
// other dialects always carry usage where they have a place for it.
func WithUsageChunk(on bool) Option { return func(c *config) { c.usageChunk = on } }

// WithCoalesce merges deltas of the same kind that come close together
// into one event: a delta waits at most delay for more, and goes out at
// once when the waiting text reaches size bytes (size 0: no size bound,
// only delay). WithCoalesce(0, 0) turns coalescing off: every delta is an
// event of its own. The default is
// [DefaultCoalesceDelay] and [DefaultCoalesceSize].
func WithCoalesce(delay time.Duration, size int) Option {
	return func(c *config) { c.delay, c.size = max(delay, 0), max(size, 0) }
}

// WithDetach lets the generation run to its end when the client leaves,
// instead of cancelling its context (the default): use it with
// [WithOnFinish] to keep answers a client did not wait for. Stream returns
// as soon as the client is gone; the generator's later writes are
// dropped.
func WithDetach() Option { return func(c *config) { c.detach = true } }

// WithOnFinish calls fn with the whole answer once its generator returned
// (in the generator's goroutine, which with [WithDetach] may outlive the
// request).
func WithOnFinish(fn func(Result)) Option { return func(c *config) { c.onFinish = fn } }
