package llm_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	sse "github.com/gin-sse/sse"
	"github.com/gin-sse/sse/llm"
	"github.com/gin-sse/sse/ssetest"
)

// upstreamBody is a provider's stream with every line ending, comments,
// data shaped like other fields, ids and a 1 MiB event.
func upstreamBody() string {
	big := strings.Repeat("x", 1<<20)
	return ": hello\r\n" +
		"retry: 10\r\n" +
		"data: {\"a\":1}\r\n\r\n" +
		"event: delta\rdata: cr only\r\r" +
		"id: 7\ndata: data: nested\ndata: event: evil\ndata: id: 666\n\n" +
		":comment between\n" +
		"data:  leading space\n\n" +
		"data\n\n" +
		"id\ndata: id reset\n\n" +
		"data: " + big + "\n\n" +
		"data: last\n\n"
}

// relayServer serves body as upstream, and a gin route relaying it.
func relayServer(t *testing.T, upstream http.HandlerFunc, relay func(c *gin.Context, resp *http.Response) error) (*httptest.Server, chan error) {
	t.Helper()
	up := httptest.NewServer(upstream)
	t.Cleanup(up.Close)
	result := make(chan error, 1)
	r := gin.New()
	r.POST("/relay", sse.Middleware(), func(c *gin.Context) {
		var body map[string]any
		if err := c.ShouldBindJSON(&body); err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
			return
		}
		req, _ := http.NewRequestWithContext(context.WithoutCancel(c.Request.Context()), http.MethodGet, up.URL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			result <- err
			return
		}
		result <- relay(c, resp)
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv, result
}

// post opens the relay route of srv.
func post(t *testing.T, ctx context.Context, srv *httptest.Server) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/relay", strings.NewReader("{}"))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	return res
}

func TestRelayIsExact(t *testing.T) {
	body := upstreamBody()
	want, err := ssetest.ParseString(body, sse.WithMaxEventSize(0))
	require.NoError(t, err)
	require.Len(t, want, 8)
	want[0].Retry = 0 // "retry:" is for reconnecting to the provider: not passed on

	srv, result := relayServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte(body))
	}, llm.Relay)
	res := post(t, context.Background(), srv)
	defer res.Body.Close()
	got, err := ssetest.Parse(res.Body, sse.WithMaxEventSize(0))
	require.NoError(t, err)
	require.NoError(t, <-result)
	assert.Equal(t, want, got)
	assert.Equal(t, "data: nested\nevent: evil\nid: 666", got[2].Data)
	assert.Equal(t, "7", got[2].ID)
	assert.Equal(t, "", got[5].ID, "the id reset carries over")
}

func TestRelayCutUpstream(t *testing.T) {
	srv, result := relayServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("data: one\n\ndata: half an ev"))
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close() // mid-chunk: the client reads an unexpected EOF
		}
	}, llm.Relay)
	res := post(t, context.Background(), srv)
	defer res.Body.Close()
	got, err := ssetest.Parse(res.Body)
	require.NoError(t, err)
	assert.Equal(t, []sse.ReceivedEvent{{Data: "one"}}, got, "the cut event is not passed on")
	assert.ErrorIs(t, <-result, llm.ErrUpstream)
}

func TestRelayClosesUpstreamWhenClientLeaves(t *testing.T) {
	upstreamGone := make(chan struct{})
	srv, result := relayServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("data: first\n\n"))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // the provider stays quiet: only a close ends it
		close(upstreamGone)
	}, llm.Relay)
	ctx, cancel := context.WithCancel(context.Background())
	res := post(t, ctx, srv)
	ev, err := sse.NewDecoder(res.Body).Decode()
	require.NoError(t, err)
	assert.Equal(t, "first", ev.Data)
	cancel()
	res.Body.Close()
	select {
	case <-upstreamGone:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request was not closed")
	}
	assert.ErrorIs(t, <-result, sse.ErrClientGone)
}

func TestRelayRefusesBadStatus(t *testing.T) {
	srv, result := relayServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusTooManyRequests)
	}, func(c *gin.Context, resp *http.Response) error {
		err := llm.Relay(c, resp)
		if err != nil {
			c.JSON(http.StatusBadGateway, gin.H{"error": err.Error()})
		}
		return err
	})
	res := post(t, context.Background(), srv)
	defer res.Body.Close()
	assert.Equal(t, http.StatusBadGateway, res.StatusCode)
	assert.ErrorIs(t, <-result, llm.ErrUpstream)
}

// relayThrough streams gen in the dialect from (with opts), relays it into
// the dialect to with RelayAs, and returns the relayed answer and what the
// client got.
func relayThrough(t *testing.T, from, to llm.Dialect, gen llm.Generator, opts ...llm.Option) (llm.Result, *ssetest.Recording) {
	t.Helper()
	up := gin.New()
	up.POST("/chat", sse.Middleware(), func(c *gin.Context) { _ = llm.Stream(c, from, gen, opts...) })
	upSrv := httptest.NewServer(up)
	defer upSrv.Close()
	finished := make(chan llm.Result, 1)
	r := gin.New()
	r.GET("/relay", sse.Middleware(), func(c *gin.Context) {
		resp, err := http.Post(upSrv.URL+"/chat", "application/json", strings.NewReader("{}"))
		require.NoError(t, err)
		require.NoError(t, llm.RelayAs(c, resp, from, to, llm.WithOnFinish(func(r llm.Result) { finished <- r })))
	})
	rec, err := ssetest.Record(r, httptest.NewRequest(http.MethodGet, "/relay", nil))
	require.NoError(t, err)
	return <-finished, rec
}

// TestRelayAsEveryPair streams the same answer in each dialect, relays
// it into each dialect and checks the result says the same.
func TestRelayAsEveryPair(t *testing.T) {
	dialects := []llm.Dialect{llm.OpenAIChat, llm.OpenAIResponses, llm.Anthropic, llm.VercelUI}
	for _, from := range dialects {
		for _, to := range dialects {
			t.Run(from.String()+"->"+to.String(), func(t *testing.T) {
				got, rec := relayThrough(t, from, to, answer, llm.WithUsageChunk(true))
				require.NoError(t, got.Err)
				assert.Equal(t, "Hello", got.Text)
				assert.Equal(t, []llm.ToolCall{{ID: "call_1", Name: "weather", Arguments: `{"city":"Paris"}`}}, got.ToolCalls)
				assert.Equal(t, llm.ToolCalls, got.FinishReason)
				if from != llm.OpenAIChat && to != llm.OpenAIChat {
					assert.Equal(t, "Thinking.", got.Reasoning)
				}
				if from != llm.VercelUI {
					assert.Equal(t, llm.Usage{InputTokens: 7, OutputTokens: 5}, got.Usage)
				}
				assert.NotEmpty(t, rec.Events)
			})
		}
	}
}

func TestRelayAsPassesUpstreamErrors(t *testing.T) {
	for name, body := range map[string]string{
		"error event":   "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
		"cut":           "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n",
		"not json":      "event: content_block_delta\ndata: {oops\n\n",
		"injection try": "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\\n\\ndata: [DONE]\\n\\n\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
	} {
		t.Run(name, func(t *testing.T) {
			srv, result := relayServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = w.Write([]byte(body))
			}, func(c *gin.Context, resp *http.Response) error {
				return llm.RelayAs(c, resp, llm.Anthropic, llm.OpenAIChat, llm.WithCoalesce(0, 0))
			})
			res := post(t, context.Background(), srv)
			defer res.Body.Close()
			evs, err := ssetest.Parse(res.Body)
			require.NoError(t, err)
			err = <-result
			last := evs[len(evs)-1]
			if name == "injection try" {
				require.NoError(t, err)
				assert.Equal(t, "[DONE]", last.Data)
				var chunk struct {
					Choices []struct {
						Delta struct{ Content string } `json:"delta"`
					} `json:"choices"`
				}
				require.NoError(t, json.Unmarshal([]byte(evs[1].Data), &chunk))
				assert.Equal(t, "\n\ndata: [DONE]\n\n", chunk.Choices[0].Delta.Content)
				return
			}
			assert.ErrorIs(t, err, llm.ErrUpstream)
			assert.Contains(t, last.Data, `"error"`)
			if name == "error event" {
				assert.Contains(t, last.Data, "Overloaded", "the provider's message is passed on")
			}
		})
	}
}

// Tool-call arguments still waiting to be merged when text follows keep
// their call, in every dialect.
func TestToolArgsThenTextKeepTheirCall(t *testing.T) {
	gen := func(ctx context.Context, out *llm.Output) error {
		for _, step := range []func() error{
			func() error { return out.ToolCall("call_1", "first") },
			func() error { return out.ToolArgs(`{"a":1}`) },
			func() error { return out.ToolCall("call_2", "second") },
			func() error { return out.ToolArgs(`{"b":2}`) },
			func() error { return out.Text("after") },
		} {
			if err := step(); err != nil {
				return err
			}
		}
		return nil
	}
	for _, d := range []llm.Dialect{llm.OpenAIChat, llm.OpenAIResponses, llm.Anthropic, llm.VercelUI} {
		t.Run(d.String(), func(t *testing.T) {
			got, _ := relayThrough(t, d, d, gen) // default coalescing
			assert.Equal(t, []llm.ToolCall{{ID: "call_1", Name: "first", Arguments: `{"a":1}`}, {ID: "call_2", Name: "second", Arguments: `{"b":2}`}}, got.ToolCalls)
			assert.Equal(t, "after", got.Text)
		})
	}
}

// An upstream cut short (it promised more bytes than it sent) is an
// error of Relay every time, never a normal end: the reader's error is
// set before the stream sees its channel close.
func TestRelayCutUpstreamIsAlwaysAnError(t *testing.T) {
	srv, result := relayServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Content-Length", "1000")
		_, _ = w.Write([]byte("data: a\n\n"))
	}, func(c *gin.Context, resp *http.Response) error {
		return llm.Relay(c, resp)
	})
	for i := range 2000 {
		resp := post(t, context.Background(), srv)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		require.ErrorIs(t, <-result, llm.ErrUpstream, "request %d", i)
	}
}

// When the client leaves a RelayAs, the answer's result says so: the
// relay closed the upstream body itself, the provider did not fail.
func TestRelayAsClientGoneIsNotAnUpstreamError(t *testing.T) {
	res := make(chan llm.Result, 1)
	srv, result := relayServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":1}}}\n\n"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}, func(c *gin.Context, resp *http.Response) error {
		return llm.RelayAs(c, resp, llm.Anthropic, llm.OpenAIChat, llm.WithOnFinish(func(r llm.Result) { res <- r }))
	})
	ctx, cancel := context.WithCancel(context.Background())
	resp := post(t, ctx, srv)
	defer resp.Body.Close()
	_, err := sse.NewDecoder(resp.Body).Decode()
	require.NoError(t, err)
	cancel()
	assert.ErrorIs(t, <-result, sse.ErrClientGone)
	r := <-res
	assert.ErrorIs(t, r.Err, sse.ErrClientGone)
	assert.NotErrorIs(t, r.Err, llm.ErrUpstream)
}

// Tool calls a provider streams one after another (OpenAI Chat's parallel
// calls, each with its index) keep their own arguments; arguments of a
// call other than the one streaming (an upstream that interleaves calls)
// are an upstream error, never merged into the wrong call.
func TestRelayAsToolCallIndexes(t *testing.T) {
	chunk := func(index int, id, name, args string) string {
		call := map[string]any{"index": index, "function": map[string]any{"arguments": args}}
		if id != "" {
			call["id"], call["type"] = id, "function"
			call["function"].(map[string]any)["name"] = name
		}
		data, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"tool_calls": []any{call}}}}})
		return "data: " + string(data) + "\n\n"
	}
	for name, tc := range map[string]struct {
		body  string
		calls []llm.ToolCall
	}{
		"one after another": {
			body: chunk(0, "call_a", "first", "") + chunk(0, "", "", `{"a":`) + chunk(0, "", "", `1}`) +
				chunk(1, "call_b", "second", "") + chunk(1, "", "", `{"b":2}`) + "data: [DONE]\n\n",
			calls: []llm.ToolCall{{ID: "call_a", Name: "first", Arguments: `{"a":1}`}, {ID: "call_b", Name: "second", Arguments: `{"b":2}`}},
		},
		"interleaved": {
			body: chunk(0, "call_a", "first", "") + chunk(1, "call_b", "second", "") +
				chunk(0, "", "", `{"a":1}`) + chunk(1, "", "", `{"b":2}`) + "data: [DONE]\n\n",
		},
	} {
		t.Run(name, func(t *testing.T) {
			res := make(chan llm.Result, 1)
			srv, result := relayServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = w.Write([]byte(tc.body))
			}, func(c *gin.Context, resp *http.Response) error {
				return llm.RelayAs(c, resp, llm.OpenAIChat, llm.OpenAIChat, llm.WithOnFinish(func(r llm.Result) { res <- r }))
			})
			resp := post(t, context.Background(), srv)
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			err := <-result
			r := <-res
			if tc.calls == nil {
				require.ErrorIs(t, err, llm.ErrUpstream)
				assert.Contains(t, err.Error(), "interleaved")
				for _, call := range r.ToolCalls {
					assert.NotContains(t, call.Arguments, "b", "call %s got another call's arguments", call.ID)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.calls, r.ToolCalls)
		})
	}
}
