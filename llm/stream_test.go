package llm_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	sse "github.com/gin-sse/sse"
	"github.com/gin-sse/sse/llm"
	"github.com/gin-sse/sse/ssetest"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	goleak.VerifyTestMain(m)
}

// answer writes a small answer with every kind of delta.
func answer(ctx context.Context, out *llm.Output) error {
	for _, step := range []func() error{
		func() error { return out.Reasoning("Think") },
		func() error { return out.Reasoning("ing.") },
		func() error { return out.Text("Hel") },
		func() error { return out.Text("lo") },
		func() error { return out.ToolCall("call_1", "weather") },
		func() error { return out.ToolArgs(`{"city":`) },
		func() error { return out.ToolArgs(`"Paris"}`) },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	out.SetUsage(llm.Usage{InputTokens: 7, OutputTokens: 5})
	return nil
}

// record runs gen through llm.Stream on a POST route and returns the
// recording and Stream's error.
func record(t *testing.T, d llm.Dialect, gen llm.Generator, opts ...llm.Option) (*ssetest.Recording, error) {
	t.Helper()
	var err error
	r := gin.New()
	r.POST("/chat", sse.Middleware(), func(c *gin.Context) {
		var body map[string]any
		require.NoError(t, c.ShouldBindJSON(&body))
		err = llm.Stream(c, d, gen, opts...)
	})
	rec, rerr := ssetest.Record(r, httptest.NewRequest(http.MethodPost, "/chat", strings.NewReader(`{"model":"m"}`)))
	require.NoError(t, rerr)
	return rec, err
}

// shape returns each event as "name type" (the JSON "type" field, or the
// data for data that is not an object), for comparing sequences.
func shape(t *testing.T, evs []sse.ReceivedEvent) []string {
	t.Helper()
	var out []string
	for _, ev := range evs {
		var v struct {
			Type string `json:"type"`
		}
		if json.Unmarshal([]byte(ev.Data), &v) != nil || v.Type == "" {
			out = append(out, strings.TrimSpace(ev.Event+" "+ev.Data))
			continue
		}
		out = append(out, strings.TrimSpace(ev.Event+" "+v.Type))
	}
	return out
}

func data(t *testing.T, ev sse.ReceivedEvent) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(ev.Data), &v), ev.Data)
	return v
}

func TestOpenAIChat(t *testing.T) {
	rec, err := record(t, llm.OpenAIChat, answer, llm.WithModel("m1"), llm.WithUsageChunk(true), llm.WithCoalesce(0, 0))
	require.NoError(t, err)
	assert.Equal(t, 200, rec.Status)
	assert.Equal(t, sse.ContentType, rec.Header.Get("Content-Type"))
	evs := rec.Events
	require.Len(t, evs, 9) // role, 2 texts, tool call, 2 args, finish, usage, [DONE]
	for _, ev := range evs {
		assert.Empty(t, ev.Event, "no event: field in OpenAI Chat")
	}
	first := data(t, evs[0])
	assert.Equal(t, "chat.completion.chunk", first["object"])
	assert.Equal(t, "m1", first["model"])
	assert.True(t, strings.HasPrefix(first["id"].(string), "chatcmpl-"))
	delta := func(i int) map[string]any {
		return data(t, evs[i])["choices"].([]any)[0].(map[string]any)["delta"].(map[string]any)
	}
	assert.Equal(t, map[string]any{"role": "assistant", "content": ""}, delta(0))
	assert.Equal(t, "Hel", delta(1)["content"])
	assert.Equal(t, "lo", delta(2)["content"])
	tc := delta(3)["tool_calls"].([]any)[0].(map[string]any)
	assert.Equal(t, "call_1", tc["id"])
	assert.Equal(t, "weather", tc["function"].(map[string]any)["name"])
	assert.Equal(t, `{"city":`, delta(4)["tool_calls"].([]any)[0].(map[string]any)["function"].(map[string]any)["arguments"])
	fin := data(t, evs[6])["choices"].([]any)[0].(map[string]any)
	assert.Equal(t, "tool_calls", fin["finish_reason"])
	usage := data(t, evs[7])
	assert.Equal(t, []any{}, usage["choices"])
	assert.Equal(t, 12.0, usage["usage"].(map[string]any)["total_tokens"])
	assert.Contains(t, rec.Body, "data: [DONE]\n\n")
	assert.True(t, strings.HasSuffix(rec.Body, "data: [DONE]\n\n"))
}

func TestOpenAIResponses(t *testing.T) {
	rec, err := record(t, llm.OpenAIResponses, answer, llm.WithModel("m1"), llm.WithCoalesce(0, 0))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"response.created response.created",
		"response.in_progress response.in_progress",
		"response.output_item.added response.output_item.added",
		"response.content_part.added response.content_part.added",
		"response.reasoning_text.delta response.reasoning_text.delta",
		"response.reasoning_text.delta response.reasoning_text.delta",
		"response.reasoning_text.done response.reasoning_text.done",
		"response.content_part.done response.content_part.done",
		"response.output_item.done response.output_item.done",
		"response.output_item.added response.output_item.added",
		"response.content_part.added response.content_part.added",
		"response.output_text.delta response.output_text.delta",
		"response.output_text.delta response.output_text.delta",
		"response.output_text.done response.output_text.done",
		"response.content_part.done response.content_part.done",
		"response.output_item.done response.output_item.done",
		"response.output_item.added response.output_item.added",
		"response.function_call_arguments.delta response.function_call_arguments.delta",
		"response.function_call_arguments.delta response.function_call_arguments.delta",
		"response.function_call_arguments.done response.function_call_arguments.done",
		"response.output_item.done response.output_item.done",
		"response.completed response.completed",
	}, shape(t, rec.Events))
	for i, ev := range rec.Events {
		assert.Equal(t, float64(i), data(t, ev)["sequence_number"])
	}
	done := data(t, rec.Events[len(rec.Events)-1])["response"].(map[string]any)
	assert.Equal(t, "completed", done["status"])
	output := done["output"].([]any)
	require.Len(t, output, 3)
	assert.Equal(t, "Hello", output[1].(map[string]any)["content"].([]any)[0].(map[string]any)["text"])
	assert.Equal(t, `{"city":"Paris"}`, output[2].(map[string]any)["arguments"])
	assert.Equal(t, 12.0, done["usage"].(map[string]any)["total_tokens"])
}

func TestAnthropic(t *testing.T) {
	rec, err := record(t, llm.Anthropic, answer, llm.WithCoalesce(0, 0))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"message_start message_start",
		"content_block_start content_block_start",
		"content_block_delta content_block_delta",
		"content_block_delta content_block_delta",
		"content_block_stop content_block_stop",
		"content_block_start content_block_start",
		"content_block_delta content_block_delta",
		"content_block_delta content_block_delta",
		"content_block_stop content_block_stop",
		"content_block_start content_block_start",
		"content_block_delta content_block_delta",
		"content_block_delta content_block_delta",
		"content_block_stop content_block_stop",
		"message_delta message_delta",
		"message_stop message_stop",
	}, shape(t, rec.Events))
	assert.Equal(t, "thinking", data(t, rec.Events[1])["content_block"].(map[string]any)["type"])
	assert.Equal(t, map[string]any{"type": "text_delta", "text": "Hel"}, data(t, rec.Events[6])["delta"])
	assert.Equal(t, 2.0, data(t, rec.Events[9])["index"])
	assert.Equal(t, "tool_use", data(t, rec.Events[13])["delta"].(map[string]any)["stop_reason"])
}

func TestVercelUI(t *testing.T) {
	rec, err := record(t, llm.VercelUI, answer, llm.WithCoalesce(0, 0))
	require.NoError(t, err)
	assert.Equal(t, "v1", rec.Header.Get("X-Vercel-Ai-Ui-Message-Stream"))
	assert.Equal(t, []string{
		"start", "start-step",
		"reasoning-start", "reasoning-delta", "reasoning-delta", "reasoning-end",
		"text-start", "text-delta", "text-delta", "text-end",
		"tool-input-start", "tool-input-delta", "tool-input-delta", "tool-input-available",
		"finish-step", "finish", "[DONE]",
	}, shape(t, rec.Events))
	avail := data(t, rec.Events[13])
	assert.Equal(t, map[string]any{"city": "Paris"}, avail["input"])
	assert.Equal(t, "tool-calls", data(t, rec.Events[15])["finishReason"])
}

// failing writes a little text and fails.
func failing(msg error) llm.Generator {
	return func(ctx context.Context, out *llm.Output) error {
		if err := out.Text("partial"); err != nil {
			return err
		}
		return msg
	}
}

func TestInBandErrors(t *testing.T) {
	secret := errors.New("db password is hunter2")
	shown := &llm.Error{Code: "rate_limited", Message: "Too many requests."}
	for _, tc := range []struct {
		d    llm.Dialect
		last func(t *testing.T, ev sse.ReceivedEvent) string // the message the client sees
	}{
		{llm.OpenAIChat, func(t *testing.T, ev sse.ReceivedEvent) string {
			return data(t, ev)["error"].(map[string]any)["message"].(string)
		}},
		{llm.OpenAIResponses, func(t *testing.T, ev sse.ReceivedEvent) string {
			assert.Equal(t, "response.failed", ev.Event)
			r := data(t, ev)["response"].(map[string]any)
			assert.Equal(t, "failed", r["status"])
			return r["error"].(map[string]any)["message"].(string)
		}},
		{llm.Anthropic, func(t *testing.T, ev sse.ReceivedEvent) string {
			assert.Equal(t, "error", ev.Event)
			return data(t, ev)["error"].(map[string]any)["message"].(string)
		}},
		{llm.VercelUI, func(t *testing.T, ev sse.ReceivedEvent) string {
			return data(t, ev)["errorText"].(string)
		}},
	} {
		t.Run(tc.d.String(), func(t *testing.T) {
			rec, err := record(t, tc.d, failing(secret))
			assert.ErrorIs(t, err, secret)
			evs := rec.Events
			if tc.d == llm.VercelUI {
				require.Equal(t, "[DONE]", evs[len(evs)-1].Data)
				evs = evs[:len(evs)-1]
			} else {
				assert.NotContains(t, rec.Body, "[DONE]")
			}
			assert.Equal(t, llm.DefaultErrorMessage, tc.last(t, evs[len(evs)-1]))
			assert.NotContains(t, rec.Body, "hunter2")

			rec, err = record(t, tc.d, failing(shown))
			assert.ErrorIs(t, err, shown)
			evs = rec.Events
			if tc.d == llm.VercelUI {
				evs = evs[:len(evs)-1]
			}
			assert.Equal(t, "Too many requests.", tc.last(t, evs[len(evs)-1]))
		})
	}
}

func TestGeneratorPanicIsAnError(t *testing.T) {
	rec, err := record(t, llm.OpenAIChat, func(ctx context.Context, out *llm.Output) error { panic("boom") })
	require.ErrorContains(t, err, "panicked: boom")
	var pe *llm.PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "boom", pe.Value)
	assert.Contains(t, string(pe.Stack), "TestGeneratorPanicIsAnError", "the stack shows where it panicked")
	assert.Contains(t, rec.Events[len(rec.Events)-1].Data, llm.DefaultErrorMessage, "the panic's value is not shown")
}

func TestCoalescing(t *testing.T) {
	tokens := func(ctx context.Context, out *llm.Output) error {
		for range 100 {
			if err := out.Text("tok "); err != nil {
				return err
			}
		}
		return nil
	}
	count := func(rec *ssetest.Recording) (deltas int, text string) {
		for _, ev := range rec.Events[1:] {
			var v struct {
				Choices []struct {
					Delta struct {
						Content *string `json:"content"`
					} `json:"delta"`
				} `json:"choices"`
			}
			if json.Unmarshal([]byte(ev.Data), &v) == nil && len(v.Choices) > 0 && v.Choices[0].Delta.Content != nil {
				deltas++
				text += *v.Choices[0].Delta.Content
			}
		}
		return deltas, text
	}
	rec, err := record(t, llm.OpenAIChat, tokens, llm.WithCoalesce(0, 0))
	require.NoError(t, err)
	n, text := count(rec)
	assert.Equal(t, 100, n, "coalescing off: one event per delta")
	assert.Equal(t, strings.Repeat("tok ", 100), text)

	// By size: 40 bytes a chunk, and a delay that never fires first.
	rec, err = record(t, llm.OpenAIChat, tokens, llm.WithCoalesce(time.Hour, 40))
	require.NoError(t, err)
	n, text = count(rec)
	assert.Equal(t, 10, n)
	assert.Equal(t, strings.Repeat("tok ", 100), text)

	// By time: deltas 1 ms apart within a 1 h window go out as one, at
	// the end of the answer.
	rec, err = record(t, llm.OpenAIChat, tokens, llm.WithCoalesce(time.Hour, 0))
	require.NoError(t, err)
	n, _ = count(rec)
	assert.Equal(t, 1, n)

	// A delta waits at most the delay: the generator blocks after one.
	got := make(chan struct{})
	rec, err = record(t, llm.OpenAIChat, func(ctx context.Context, out *llm.Output) error {
		if err := out.Text("first"); err != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond) // well past the delay
		close(got)
		return out.Text(" second")
	}, llm.WithCoalesce(5*time.Millisecond, 0))
	<-got
	require.NoError(t, err)
	n, _ = count(rec)
	assert.Equal(t, 2, n, "the first delta went out alone after its delay")
}

// A Dialect that is none of the package's is refused with a sentinel.
func TestUnknownDialect(t *testing.T) {
	c, _ := gin.CreateTestContext(httptest.NewRecorder())
	err := llm.Stream(c, llm.Dialect(99), func(context.Context, *llm.Output) error { return nil })
	assert.ErrorIs(t, err, llm.ErrUnknownDialect)
}
