package llm_test

import (
	"bufio"
	"context"
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
)

// endless writes a token every millisecond until its context is done,
// and reports when it started and when its context ended.
func endless(started chan<- struct{}, cancelled chan<- time.Time) llm.Generator {
	return func(ctx context.Context, out *llm.Output) error {
		close(started)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				cancelled <- time.Now()
				return ctx.Err()
			case <-t.C:
				if err := out.Text("tok "); err != nil {
					cancelled <- time.Now()
					return err
				}
			}
		}
	}
}

// open starts a streaming POST to srv and reads until the first event.
func open(t *testing.T, srv *httptest.Server) (*http.Response, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/chat", strings.NewReader(`{}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, err = sse.NewDecoder(res.Body).Decode()
	require.NoError(t, err)
	return res, cancel
}

func TestClientLeavesCancelsGeneration(t *testing.T) {
	started, cancelled := make(chan struct{}), make(chan time.Time, 1)
	result := make(chan error, 1)
	r := gin.New()
	r.POST("/chat", sse.Middleware(), func(c *gin.Context) {
		var body map[string]any
		if c.ShouldBindJSON(&body) != nil {
			c.Status(400)
			return
		}
		result <- llm.Stream(c, llm.OpenAIChat, endless(started, cancelled))
	})
	srv := httptest.NewServer(r)
	defer srv.Close()

	res, cancel := open(t, srv)
	<-started
	left := time.Now()
	cancel()
	res.Body.Close()
	took := (<-cancelled).Sub(left)
	t.Logf("the generator's context was cancelled %v after the client left", took)
	assert.Less(t, took, 100*time.Millisecond)
	assert.ErrorIs(t, <-result, sse.ErrClientGone)
}

func TestClientLeavesDetachedAnswerCompletes(t *testing.T) {
	release := make(chan struct{})
	finished := make(chan llm.Result, 1)
	result := make(chan error, 1)
	r := gin.New()
	r.POST("/chat", sse.Middleware(), func(c *gin.Context) {
		var body map[string]any
		_ = c.ShouldBindJSON(&body) // net/http sees the client leave once the body is read
		result <- llm.Stream(c, llm.Anthropic, func(ctx context.Context, out *llm.Output) error {
			if err := out.Text("Hello"); err != nil {
				return err
			}
			<-release // the client leaves meanwhile
			if ctx.Err() != nil {
				return ctx.Err()
			}
			for _, s := range []string{", ", "world"} {
				if err := out.Text(s); err != nil {
					return err
				}
			}
			out.SetUsage(llm.Usage{InputTokens: 3, OutputTokens: 2})
			return nil
		}, llm.WithDetach(), llm.WithCoalesce(0, 0), llm.WithOnFinish(func(r llm.Result) { finished <- r }))
	})
	srv := httptest.NewServer(r)
	defer srv.Close()

	res, cancel := open(t, srv)
	cancel()
	res.Body.Close()
	assert.ErrorIs(t, <-result, sse.ErrClientGone, "Stream returns when the client leaves")
	close(release)
	got := <-finished
	assert.NoError(t, got.Err)
	assert.Equal(t, "Hello, world", got.Text)
	assert.Equal(t, llm.Stop, got.FinishReason)
	assert.Equal(t, llm.Usage{InputTokens: 3, OutputTokens: 2}, got.Usage)
	assert.True(t, strings.HasPrefix(got.ID, "msg_"))
}

func TestShutdownEndsAnswerWithError(t *testing.T) {
	shutdown := make(chan struct{})
	started, cancelled := make(chan struct{}), make(chan time.Time, 1)
	result := make(chan error, 1)
	r := gin.New()
	r.POST("/chat", sse.Middleware(sse.WithDone(shutdown)), func(c *gin.Context) {
		result <- llm.Stream(c, llm.Anthropic, endless(started, cancelled))
	})
	srv := httptest.NewServer(r)
	defer srv.Close()

	res, cancel := open(t, srv)
	defer cancel()
	defer res.Body.Close()
	<-started
	close(shutdown)
	assert.ErrorIs(t, <-result, llm.ErrShutdown)
	<-cancelled
	body := bufio.NewReader(res.Body)
	var last sse.ReceivedEvent
	dec := sse.NewDecoder(body)
	for {
		ev, err := dec.Decode()
		if err != nil {
			break
		}
		last = ev
	}
	assert.Equal(t, "error", last.Event)
	assert.Contains(t, last.Data, `"overloaded_error"`)
}

func TestAnthropicHeartbeatIsPing(t *testing.T) {
	release := make(chan struct{})
	r := gin.New()
	r.POST("/chat", sse.Middleware(sse.WithHeartbeat(10*time.Millisecond)), func(c *gin.Context) {
		_ = llm.Stream(c, llm.Anthropic, func(ctx context.Context, out *llm.Output) error {
			select { // the model thinks
			case <-release:
			case <-ctx.Done():
			}
			return ctx.Err()
		})
	})
	srv := httptest.NewServer(r)
	defer srv.Close()
	defer close(release)
	res, cancel := open(t, srv) // message_start
	defer cancel()
	defer res.Body.Close()
	dec := sse.NewDecoder(res.Body)
	for range 2 {
		ev, err := dec.Decode()
		require.NoError(t, err)
		assert.Equal(t, sse.ReceivedEvent{Event: "ping", Data: `{"type": "ping"}`}, ev)
	}
}

// The generator's context, cancelled because the client left, has the
// client's leaving as its cause, as Stream's doc says.
func TestClientLeavesIsTheCause(t *testing.T) {
	cause := make(chan error, 1)
	started := make(chan struct{})
	r := gin.New()
	r.POST("/chat", sse.Middleware(), func(c *gin.Context) {
		var body map[string]any
		_ = c.ShouldBindJSON(&body)
		_ = llm.Stream(c, llm.OpenAIChat, func(ctx context.Context, out *llm.Output) error {
			_ = out.Text("hi")
			_ = out.Flush()
			close(started)
			<-ctx.Done()
			cause <- context.Cause(ctx)
			return ctx.Err()
		})
	})
	srv := httptest.NewServer(r)
	defer srv.Close()
	res, cancel := open(t, srv)
	defer res.Body.Close()
	<-started
	cancel()
	assert.ErrorIs(t, <-cause, sse.ErrClientGone)
}
