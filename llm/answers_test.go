package llm_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
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

// paced writes tokens "t0 " to "t<n-1> ", each when step gives a value,
// until step closes.
func paced(n int, step <-chan struct{}) llm.Generator {
	return func(ctx context.Context, out *llm.Output) error {
		for i := range n {
			select {
			case _, ok := <-step:
				if !ok {
					return nil
				}
			case <-ctx.Done():
				return ctx.Err()
			}
			if err := out.Text("t" + itoa(i) + " "); err != nil {
				return err
			}
		}
		return nil
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// chatText collects the content of OpenAI Chat chunks until [DONE].
func chatText(t *testing.T, s *ssetest.Stream, until string) (text, lastID string, done bool) {
	t.Helper()
	for {
		ev, err := s.Next()
		require.NoError(t, err)
		lastID = ev.ID
		if ev.Data == "[DONE]" {
			return text, lastID, true
		}
		var chunk struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		require.NoError(t, json.Unmarshal([]byte(ev.Data), &chunk), ev.Data)
		if len(chunk.Choices) > 0 {
			text += chunk.Choices[0].Delta.Content
		}
		if until != "" && strings.HasSuffix(text, until) {
			return text, lastID, false
		}
	}
}

func TestAnswersResumeExactlyOnce(t *testing.T) {
	b, err := sse.NewBroker()
	require.NoError(t, err)
	defer b.Shutdown(context.Background())
	answers := llm.NewAnswers(b, llm.OpenAIChat, llm.WithCoalesce(0, 0))
	r := gin.New()
	r.GET("/answers/:id", answers.Handler("id"))
	srv := httptest.NewServer(r)
	defer srv.Close()

	step := make(chan struct{})
	a, err := answers.Start(context.Background(), "q1", paced(10, step))
	require.NoError(t, err)
	_, err = answers.Start(context.Background(), "q1", paced(1, nil))
	assert.ErrorIs(t, err, llm.ErrAnswerExists)
	step <- struct{}{}
	step <- struct{}{}

	// The first tab opens from the answer's start, reads, and reloads.
	ctx, cancel := context.WithCancel(context.Background())
	tab1, err := ssetest.Connect(ctx, nil, srv.URL+"/answers/q1?from="+a.From, nil)
	require.NoError(t, err)
	text, last, _ := chatText(t, tab1, "t1 ")
	assert.Equal(t, "t0 t1 ", text)
	cancel()
	step <- struct{}{}
	step <- struct{}{}

	// It resumes with its Last-Event-ID; a second tab starts from the top.
	tab1, err = ssetest.Connect(context.Background(), nil, srv.URL+"/answers/q1?from="+a.From, http.Header{"Last-Event-ID": {last}})
	require.NoError(t, err)
	defer tab1.Close()
	tab2, err := ssetest.Connect(context.Background(), nil, srv.URL+"/answers/q1?from="+a.From, nil)
	require.NoError(t, err)
	defer tab2.Close()
	go func() {
		for range 6 {
			step <- struct{}{}
		}
	}()
	rest, _, done := chatText(t, tab1, "")
	assert.True(t, done)
	assert.Equal(t, "t0 t1 t2 t3 t4 t5 t6 t7 t8 t9 ", text+rest, "every token once")
	all, _, done := chatText(t, tab2, "")
	assert.True(t, done)
	assert.Equal(t, "t0 t1 t2 t3 t4 t5 t6 t7 t8 t9 ", all)
}

func TestAnswersStop(t *testing.T) {
	b, err := sse.NewBroker()
	require.NoError(t, err)
	defer b.Shutdown(context.Background())
	finished := make(chan llm.Result, 1)
	answers := llm.NewAnswers(b, llm.VercelUI, llm.WithCoalesce(0, 0), llm.WithOnFinish(func(r llm.Result) { finished <- r }))
	sub, err := b.Subscribe(context.Background(), []string{answers.Topic("q2")}, "")
	require.NoError(t, err)
	defer sub.Close()
	step := make(chan struct{})
	_, err = answers.Start(context.Background(), "q2", paced(1000, step))
	require.NoError(t, err)
	step <- struct{}{}
	require.NoError(t, answers.Stop(context.Background(), "q2"))
	res := <-finished
	assert.ErrorIs(t, res.Err, llm.ErrStopped)
	assert.Equal(t, "t0 ", res.Text)
	var types []string
	for ev, err := range sub.Events() {
		require.NoError(t, err)
		if ev.Data == "[DONE]" {
			break
		}
		var v struct{ Type string }
		require.NoError(t, json.Unmarshal([]byte(ev.Data), &v))
		types = append(types, v.Type)
	}
	assert.Equal(t, []string{"start", "start-step", "text-start", "text-delta", "text-end", "finish-step", "finish"}, types)
}

// TestAnswersStopFromAnotherServer stops an answer through a second
// Answers (another server's) sharing the broker, as over Redis.
func TestAnswersStopFromAnotherServer(t *testing.T) {
	b, err := sse.NewBroker()
	require.NoError(t, err)
	defer b.Shutdown(context.Background())
	finished := make(chan llm.Result, 1)
	here := llm.NewAnswers(b, llm.Anthropic, llm.WithOnFinish(func(r llm.Result) { finished <- r }))
	there := llm.NewAnswers(b, llm.Anthropic)
	_, err = here.Start(context.Background(), "q3", paced(1000, make(chan struct{})))
	require.NoError(t, err)
	require.NoError(t, there.Stop(context.Background(), "q3"))
	select {
	case res := <-finished:
		assert.ErrorIs(t, res.Err, llm.ErrStopped)
	case <-time.After(5 * time.Second):
		t.Fatal("the answer did not stop")
	}
}

func TestAnswersInvalidID(t *testing.T) {
	b, err := sse.NewBroker()
	require.NoError(t, err)
	defer b.Shutdown(context.Background())
	answers := llm.NewAnswers(b, llm.OpenAIChat)
	_, err = answers.Start(context.Background(), "", paced(1, nil))
	assert.ErrorIs(t, err, llm.ErrInvalidID)
	_, err = answers.Start(context.Background(), strings.Repeat("x", 200), paced(1, nil))
	assert.ErrorIs(t, err, llm.ErrInvalidID)
}

// Only a stop event stops an answer: other events on its stop topic do
// not.
func TestAnswersStopOnlyOnStop(t *testing.T) {
	b, err := sse.NewBroker()
	require.NoError(t, err)
	defer b.Shutdown(context.Background())
	finished := make(chan llm.Result, 1)
	answers := llm.NewAnswers(b, llm.OpenAIChat, llm.WithOnFinish(func(r llm.Result) { finished <- r }))
	step := make(chan struct{})
	_, err = answers.Start(context.Background(), "q4", paced(2, step))
	require.NoError(t, err)
	_, err = b.Publish(context.Background(), "answer-stop:q4", sse.Event{Event: "presence", Data: "{}"})
	require.NoError(t, err)
	step <- struct{}{}
	step <- struct{}{}
	res := <-finished
	assert.NoError(t, res.Err)
	assert.Equal(t, "t0 t1 ", res.Text)
}

// A broker that shuts down ends its answers' generators, with the cause
// ErrShutdown.
func TestAnswersEndAtShutdown(t *testing.T) {
	b, err := sse.NewBroker()
	require.NoError(t, err)
	finished := make(chan llm.Result, 1)
	answers := llm.NewAnswers(b, llm.Anthropic, llm.WithOnFinish(func(r llm.Result) { finished <- r }))
	_, err = answers.Start(context.Background(), "q5", paced(1000, make(chan struct{})))
	require.NoError(t, err)
	require.NoError(t, b.Shutdown(context.Background()))
	select {
	case res := <-finished:
		assert.ErrorIs(t, res.Err, llm.ErrShutdown)
	case <-time.After(5 * time.Second):
		t.Fatal("the generator did not end at shutdown")
	}
}
