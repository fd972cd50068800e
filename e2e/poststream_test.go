package e2e

// The tests of this file stream an OpenAI-style answer to a POST request
// whose JSON body the handler binds after sse.Middleware ran: the shape of
// every LLM endpoint (POST /v1/chat/completions). They serve the route over
// real HTTP/1.1 and HTTP/2 servers and read it with a plain net/http client
// and with the official openai-go SDK.
//
// They prove that the middleware lets the handler read the request body,
// that it commits no 200 before the handler's first write, so that a
// request the handler refuses gets a real 400 with a JSON error instead of
// a 200 event stream with the error inside it, and that no connection
// breaks after the handler returned (the server logs no panic).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gin-sse/sse"
)

// chatMessage is one message of an OpenAI chat request. Only string content
// is accepted, which is what the SDK sends for openai.UserMessage("...").
type chatMessage struct {
	Role    string `json:"role" binding:"required"`
	Content string `json:"content"`
}

// chatRequest is an OpenAI Chat Completions request, reduced to what the
// test handler reads.
type chatRequest struct {
	Model    string        `json:"model" binding:"required"`
	Messages []chatMessage `json:"messages" binding:"required,min=1,dive"`
	Stream   bool          `json:"stream"`
}

// chunkDelta, chunkChoice and chatChunk are an OpenAI
// "chat.completion.chunk", as the API streams it.
type chunkDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type chunkChoice struct {
	Index        int        `json:"index"`
	Delta        chunkDelta `json:"delta"`
	FinishReason *string    `json:"finish_reason"` // null until the last chunk
}

type chatChunk struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"`
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Choices []chunkChoice `json:"choices"`
}

const (
	chatCompletionID = "chatcmpl-sse-e2e"
	chatCreated      = 1735689600 // every chunk of a completion has the same
)

// openAIError answers the request with status and an OpenAI-style error
// body, which the SDK decodes into an *openai.Error.
func openAIError(c *gin.Context, status int, msg string) {
	c.JSON(status, gin.H{"error": gin.H{
		"message": msg,
		"type":    "invalid_request_error",
		"param":   nil,
		"code":    nil,
	}})
}

// chatDeltas is what the handler streams for req: the words of the last
// user message, one delta each (after the first with a leading space). It
// depends on the body only, so a stream that carries them proves the body
// was read.
func chatDeltas(req *chatRequest) []string {
	var last string
	for _, m := range req.Messages {
		if m.Role == "user" {
			last = m.Content
		}
	}
	words := strings.Fields(last)
	for i := 1; i < len(words); i++ {
		words[i] = " " + words[i]
	}
	return words
}

// chatHandler is an LLM endpoint behind sse.Middleware: it binds the JSON
// body, answers 400 when it cannot, and otherwise streams one chunk per
// delta, a last chunk with finish_reason "stop" and "data: [DONE]", all as
// unnamed events.
func chatHandler(c *gin.Context) {
	var req chatRequest
	if err := c.ShouldBindJSON(&req); err != nil {
		openAIError(c, http.StatusBadRequest, "invalid request body: "+err.Error())
		return
	}
	if !req.Stream {
		openAIError(c, http.StatusBadRequest, "this endpoint only streams: set \"stream\": true")
		return
	}
	deltas := chatDeltas(&req)
	if len(deltas) == 0 {
		openAIError(c, http.StatusBadRequest, "no user message to answer")
		return
	}

	send := func(delta chunkDelta, finish *string) bool {
		b, err := json.Marshal(chatChunk{
			ID:      chatCompletionID,
			Object:  "chat.completion.chunk",
			Created: chatCreated,
			Model:   req.Model,
			Choices: []chunkChoice{{Index: 0, Delta: delta, FinishReason: finish}},
		})
		if err == nil {
			err = sse.Send(c, sse.Event{Data: b})
		}
		if err != nil {
			_ = c.Error(err)
			return false
		}
		return true
	}
	for i, d := range deltas {
		delta := chunkDelta{Content: &d}
		if i == 0 {
			delta.Role = "assistant"
		}
		if !send(delta, nil) {
			return
		}
	}
	stop := "stop"
	if !send(chunkDelta{}, &stop) {
		return
	}
	if err := sse.Send(c, sse.Event{Data: "[DONE]"}); err != nil {
		_ = c.Error(err)
	}
}

var ginTestMode sync.Once

// newChatRouter is the gin app under test.
func newChatRouter() *gin.Engine {
	ginTestMode.Do(func() { gin.SetMode(gin.TestMode) })
	r := gin.New()
	r.POST("/v1/chat/completions", sse.Middleware(), chatHandler)
	return r
}

// chatServer is the app served over one HTTP version.
type chatServer struct {
	name       string
	protoMajor int
	start      func(h http.Handler, configure func(*http.Server)) *httptest.Server
}

// chatServers are the servers every test runs against: a plain HTTP/1.1
// server, and an HTTP/2 server over TLS.
var chatServers = []chatServer{
	{name: "HTTP1", protoMajor: 1, start: func(h http.Handler, configure func(*http.Server)) *httptest.Server {
		srv := httptest.NewUnstartedServer(h)
		configure(srv.Config)
		srv.Start()
		return srv
	}},
	{name: "HTTP2", protoMajor: 2, start: func(h http.Handler, configure func(*http.Server)) *httptest.Server {
		srv := httptest.NewUnstartedServer(h)
		configure(srv.Config)
		srv.EnableHTTP2 = true
		srv.StartTLS()
		return srv
	}},
}

// chatLogBuffer is a bytes.Buffer safe for the server's goroutines.
type chatLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *chatLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *chatLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// chatConnStates follows the server's connections through its ConnState hook.
type chatConnStates struct {
	mu      sync.Mutex
	active  map[net.Conn]bool
	changed chan struct{} // closed at every change
}

func newChatConnStates() *chatConnStates {
	return &chatConnStates{active: map[net.Conn]bool{}, changed: make(chan struct{})}
}

func (s *chatConnStates) hook(c net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if state == http.StateActive {
		s.active[c] = true
	} else {
		delete(s.active, c)
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitQuiet returns once no connection serves a request: each finished its
// response and went idle (or closed). An HTTP/1.x connection reports idle
// just before it waits for the next request.
func (s *chatConnStates) waitQuiet(ctx context.Context) error {
	for {
		s.mu.Lock()
		n, changed := len(s.active), s.changed
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%d connections still active: %w", n, ctx.Err())
		}
	}
}

// eachChatServer runs test against a fresh server of each HTTP version. When
// the subtest ends, it waits until the server's connections are idle,
// closes the server, which waits until every connection has ended, and then
// requires that the server logged no panic: net/http recovers a panic of a
// connection's goroutine (a handler's, or its own, such as "invalid
// concurrent Body.Read call" when an HTTP/1.x connection that was put in
// full duplex goes back to waiting for a request while a read of the
// connection is still under way, golang/go#68560) and only logs it and
// closes the connection, which a client that reuses the connection sees as
// a failed request.
func eachChatServer(t *testing.T, test func(t *testing.T, srv *httptest.Server, cs chatServer)) {
	for _, cs := range chatServers {
		t.Run(cs.name, func(t *testing.T) {
			var errorLog chatLogBuffer
			conns := newChatConnStates()
			srv := cs.start(newChatRouter(), func(s *http.Server) {
				s.ErrorLog = log.New(&errorLog, "", 0)
				s.ConnState = conns.hook
			})
			t.Cleanup(func() {
				// The test's context is done by now.
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				assert.NoError(t, conns.waitQuiet(ctx), "the server's connections go idle")
				srv.Close() // waits for the connections: the log is complete
				logged := errorLog.String()
				if logged != "" {
					t.Logf("server error log:\n%s", logged)
				}
				assert.False(t, strings.Contains(logged, "panic"),
					"the server panicked serving a connection (see its error log above)")
			})
			test(t, srv, cs)
		})
	}
}

// chatTestContext bounds a test so that a hung stream fails it instead of the
// whole run; nothing waits for it to pass.
func chatTestContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// postChat POSTs body to the chat route as the JSON of a chat request,
// with a Content-Length or, when chunked, with a body of unknown length
// (chunked on HTTP/1.1, ContentLength -1 for the server).
func postChat(t *testing.T, ctx context.Context, srv *httptest.Server, body string, chunked bool) *http.Response {
	t.Helper()
	var r io.Reader = strings.NewReader(body)
	if chunked {
		r = io.MultiReader(r) // hides the length from net/http
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions", r)
	require.NoError(t, err)
	if chunked {
		require.Zero(t, req.ContentLength, "sent with an unknown length")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer test")
	res, err := srv.Client().Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = res.Body.Close() })
	return res
}

// The conversation the tests send: the answer echoes the last user message,
// not the first one nor the assistant's.
const (
	chatModel       = "gpt-4o-mini"
	firstUserText   = "hello there"
	assistantText   = "Hi! What should I echo?"
	lastUserText    = "red green blue yellow"
	wantContent     = "red green blue yellow"
	wantChunks      = 5 // 4 words, then the "stop" chunk
	wantContentRuns = 4
)

// chatBodyModes are the two ways a client sends the request body.
var chatBodyModes = []struct {
	name    string
	chunked bool
}{
	{"ContentLength", false},
	{"Chunked", true},
}

func TestPostStreamPlainClient(t *testing.T) {
	body, err := json.Marshal(map[string]any{
		"model": chatModel,
		"messages": []map[string]string{
			{"role": "system", "content": "You are an echo bot."},
			{"role": "user", "content": firstUserText},
			{"role": "assistant", "content": assistantText},
			{"role": "user", "content": lastUserText},
		},
		"stream": true,
	})
	require.NoError(t, err)

	eachChatServer(t, func(t *testing.T, srv *httptest.Server, cs chatServer) {
		for _, mode := range chatBodyModes {
			t.Run(mode.name, func(t *testing.T) {
				ctx := chatTestContext(t)
				postAndCheckStream(t, ctx, srv, cs, string(body), mode.chunked)
			})
		}
	})
}

// checkChatStream checks the event stream raw against the answer to the
// conversation of the tests.
func checkChatStream(t *testing.T, raw []byte) {
	t.Helper()
	dec := sse.NewDecoder(bytes.NewReader(raw))
	var (
		content strings.Builder
		chunks  []chatChunk
		done    bool
	)
	for {
		ev, err := dec.Decode()
		if err == io.EOF {
			break
		}
		require.NoError(t, err, "body:\n%s", raw)
		require.Empty(t, ev.Event, "chunks are unnamed (\"message\") events")
		// The decoder's Data is a string; Sprint keeps this test
		// independent of the type that holds it.
		data := ev.Data
		require.False(t, done, "an event after [DONE]: %q", data)
		if data == "[DONE]" {
			done = true
			continue
		}
		var chunk chatChunk
		require.NoError(t, json.Unmarshal([]byte(data), &chunk), "event data %q", data)
		require.Len(t, chunk.Choices, 1, "event data %q", data)
		chunks = append(chunks, chunk)
		if c := chunk.Choices[0].Delta.Content; c != nil {
			content.WriteString(*c)
		}
	}
	require.True(t, done, "the stream ends with data: [DONE]; body:\n%s", raw)
	require.Len(t, chunks, wantChunks, "body:\n%s", raw)
	assert.Equal(t, wantContent, content.String())
	for i, chunk := range chunks {
		assert.Equal(t, chatCompletionID, chunk.ID)
		assert.Equal(t, "chat.completion.chunk", chunk.Object)
		assert.Equal(t, int64(chatCreated), chunk.Created)
		assert.Equal(t, chatModel, chunk.Model, "the model of the request")
		choice := chunk.Choices[0]
		assert.Equal(t, 0, choice.Index)
		if i < len(chunks)-1 {
			assert.Nil(t, choice.FinishReason, "chunk %d", i)
			assert.NotNil(t, choice.Delta.Content, "chunk %d", i)
		} else {
			require.NotNil(t, choice.FinishReason, "last chunk")
			assert.Equal(t, "stop", *choice.FinishReason)
			assert.Nil(t, choice.Delta.Content, "last chunk")
		}
	}
	assert.Equal(t, "assistant", chunks[0].Choices[0].Delta.Role)
}

func TestPostStreamBadRequest(t *testing.T) {
	cases := []struct {
		name, body, wantMessage string
	}{
		{name: "MalformedJSON", body: `{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}`, wantMessage: "invalid request body"},
		{name: "NotJSON", body: `model=gpt-4o-mini`, wantMessage: "invalid request body"},
		{name: "NoMessages", body: `{"model": "gpt-4o-mini", "messages": [], "stream": true}`, wantMessage: "invalid request body"},
		{name: "StreamFalse", body: `{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": false}`, wantMessage: "only streams"},
	}
	eachChatServer(t, func(t *testing.T, srv *httptest.Server, cs chatServer) {
		for _, mode := range chatBodyModes {
			for _, tc := range cases {
				t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
					ctx := chatTestContext(t)
					res := postChat(t, ctx, srv, tc.body, mode.chunked)
					require.Equal(t, cs.protoMajor, res.ProtoMajor, "served over %s", res.Proto)
					raw, err := io.ReadAll(res.Body)
					require.NoError(t, err)

					// A real 400, not a 200 stream with the error inside
					// it: the middleware committed nothing before the
					// handler answered.
					require.Equal(t, http.StatusBadRequest, res.StatusCode,
						"Content-Type %q, body:\n%s", res.Header.Get("Content-Type"), raw)
					assert.True(t, strings.HasPrefix(res.Header.Get("Content-Type"), "application/json"),
						"Content-Type %q", res.Header.Get("Content-Type"))

					var got struct {
						Error struct {
							Message string `json:"message"`
							Type    string `json:"type"`
						} `json:"error"`
					}
					require.NoError(t, json.Unmarshal(raw, &got), "the whole body is one JSON error:\n%s", raw)
					assert.Contains(t, got.Error.Message, tc.wantMessage)
					assert.Equal(t, "invalid_request_error", got.Error.Type)
				})
			}
		}
	})
}

// TestPostStreamUnreadBody sends a body that the handler does not read to
// the end: the JSON request is followed by whitespace, which a JSON decoder
// leaves unread (a chunked body's last, empty chunk is left unread the same
// way when it arrives after the JSON). The server must read the rest after
// the handler, answer in full and keep serving the connection.
func TestPostStreamUnreadBody(t *testing.T) {
	body, err := json.Marshal(map[string]any{
		"model":    chatModel,
		"messages": []map[string]string{{"role": "user", "content": lastUserText}},
		"stream":   true,
	})
	require.NoError(t, err)
	padded := string(body) + "\n" + strings.Repeat(" ", 16<<10) + "\n"

	// One request per server: nothing follows it on its connection that
	// could hide a broken connection state.
	for _, mode := range chatBodyModes {
		t.Run(mode.name, func(t *testing.T) {
			eachChatServer(t, func(t *testing.T, srv *httptest.Server, cs chatServer) {
				ctx := chatTestContext(t)
				postAndCheckStream(t, ctx, srv, cs, padded, mode.chunked)
				// eachChatServer checks, once the server closed, that its
				// connection did not panic after the handler returned.
			})
		})
	}
}

// newOpenAIClient is an openai-go client of srv that does not retry.
func newOpenAIClient(srv *httptest.Server) openai.Client {
	return openai.NewClient(
		option.WithBaseURL(srv.URL+"/v1/"),
		option.WithAPIKey("test"),
		option.WithHTTPClient(srv.Client()),
		option.WithMaxRetries(0),
	)
}

// chatParams is the conversation of the tests as SDK parameters.
func chatParams() openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model: chatModel,
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("You are an echo bot."),
			openai.UserMessage(firstUserText),
			openai.AssistantMessage(assistantText),
			openai.UserMessage(lastUserText),
		},
	}
}

func TestOpenAISDKStreaming(t *testing.T) {
	eachChatServer(t, func(t *testing.T, srv *httptest.Server, cs chatServer) {
		ctx := chatTestContext(t)
		client := newOpenAIClient(srv)

		var res *http.Response
		stream := client.Chat.Completions.NewStreaming(ctx, chatParams(), option.WithResponseInto(&res))
		t.Cleanup(func() { _ = stream.Close() })

		var (
			acc      openai.ChatCompletionAccumulator
			content  strings.Builder
			chunks   int
			contents int
			finished []string
		)
		for stream.Next() {
			chunk := stream.Current()
			chunks++
			require.True(t, acc.AddChunk(chunk), "accumulate chunk %d: %s", chunks, chunk.RawJSON())
			if text, ok := acc.JustFinishedContent(); ok {
				finished = append(finished, text)
			}
			assert.Equal(t, chatCompletionID, chunk.ID)
			assert.Equal(t, chatModel, chunk.Model)
			require.Len(t, chunk.Choices, 1, "chunk %d: %s", chunks, chunk.RawJSON())
			if c := chunk.Choices[0].Delta.Content; c != "" {
				contents++
				content.WriteString(c)
			}
		}
		require.NoError(t, stream.Err())
		require.Equal(t, wantChunks, chunks,
			"chunks the SDK delivered (none and no error: the handler could not read the body and its 400 went into a 200 stream)")
		require.NotNil(t, res, "the SDK's response")
		assert.Equal(t, cs.protoMajor, res.ProtoMajor, "served over %s", res.Proto)
		assert.Equal(t, http.StatusOK, res.StatusCode)
		assert.True(t, strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream"),
			"Content-Type %q", res.Header.Get("Content-Type"))

		assert.Equal(t, wantContentRuns, contents, "chunks with content")
		assert.Equal(t, wantContent, content.String())

		// The accumulator rebuilds the whole completion.
		assert.Equal(t, chatCompletionID, acc.ID)
		assert.Equal(t, chatModel, acc.Model)
		if assert.Len(t, acc.Choices, 1) {
			assert.Equal(t, wantContent, acc.Choices[0].Message.Content)
			assert.Equal(t, "stop", acc.Choices[0].FinishReason)
		}
		assert.Equal(t, []string{wantContent}, finished, "JustFinishedContent fires once, with the whole text")
	})
}

func TestOpenAISDKBadRequest(t *testing.T) {
	eachChatServer(t, func(t *testing.T, srv *httptest.Server, cs chatServer) {
		ctx := chatTestContext(t)
		client := newOpenAIClient(srv)

		// No messages: the handler refuses the body with a 400, which the
		// SDK must report as an *openai.Error, not as an empty stream.
		stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: chatModel})
		t.Cleanup(func() { _ = stream.Close() })
		chunks := 0
		for stream.Next() {
			chunks++
		}
		assert.Zero(t, chunks, "chunks the SDK delivered")

		err := stream.Err()
		require.Error(t, err, "a 400 must reach the SDK as an error, not as an empty stream")
		var apiErr *openai.Error
		require.True(t, errors.As(err, &apiErr), "an *openai.Error, got %T: %v", err, err)
		assert.Equal(t, http.StatusBadRequest, apiErr.StatusCode)
		assert.Equal(t, "invalid_request_error", apiErr.Type)
		assert.Contains(t, apiErr.Message, "invalid request body")
		if assert.NotNil(t, apiErr.Response) {
			assert.Equal(t, cs.protoMajor, apiErr.Response.ProtoMajor, "served over %s", apiErr.Response.Proto)
		}
	})
}

// postAndCheckStream posts body to srv's chat route and checks that the
// answer is the complete chat stream, over the server's protocol.
func postAndCheckStream(t *testing.T, ctx context.Context, srv *httptest.Server, cs chatServer, body string, chunked bool) {
	t.Helper()
	res := postChat(t, ctx, srv, body, chunked)
	require.Equal(t, cs.protoMajor, res.ProtoMajor, "served over %s", res.Proto)
	raw, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode, "body:\n%s", raw)
	require.True(t, strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream"),
		"Content-Type %q, body:\n%s", res.Header.Get("Content-Type"), raw)
	checkChatStream(t, raw)
}
