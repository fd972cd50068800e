package sseredis_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	sse "github.com/gin-sse/sse"
	"github.com/gin-sse/sse/llm"
)

// readAnswer reads OpenAI Chat chunks of sub until [DONE], or n deltas
// when n > 0, and returns their text and the last event id.
func readAnswer(t *testing.T, sub *sse.Subscription, n int) (text, last string, done bool) {
	t.Helper()
	for {
		ev, err := sub.Next()
		require.NoError(t, err)
		last = ev.ID
		if ev.Data == "[DONE]" {
			return text, last, true
		}
		var chunk struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		require.NoError(t, json.Unmarshal([]byte(ev.Data), &chunk), ev.Data)
		if len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != "" {
			text += chunk.Choices[0].Delta.Content
			if n--; n == 0 {
				return text, last, false
			}
		}
	}
}

// TestAnswersAcrossInstances runs an answer on instance A and follows it
// from instance B: from its start, then again after a reconnect with the
// last event id, every token once; then a second answer is stopped from B.
func TestAnswersAcrossInstances(t *testing.T) {
	needRedis(t)
	prefix := testPrefix(t)
	a, b := newNode(t, redisAddr, prefix), newNode(t, redisAddr, prefix)
	onA := llm.NewAnswers(a.broker, llm.OpenAIChat, llm.WithCoalesce(0, 0))
	onB := llm.NewAnswers(b.broker, llm.OpenAIChat, llm.WithCoalesce(0, 0))

	step := make(chan struct{})
	gen := func(ctx context.Context, out *llm.Output) error {
		for i := range 10 {
			select {
			case <-step:
			case <-ctx.Done():
				return ctx.Err()
			}
			if err := out.Text("t" + strconv.Itoa(i) + " "); err != nil {
				return err
			}
		}
		return nil
	}
	ans, err := onA.Start(context.Background(), "q1", gen)
	require.NoError(t, err)
	for range 3 {
		step <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	sub, err := b.broker.Subscribe(ctx, []string{onB.Topic("q1")}, ans.From)
	require.NoError(t, err)
	text, last, _ := readAnswer(t, sub, 3)
	assert.Equal(t, "t0 t1 t2 ", text)
	sub.Close()
	for range 3 {
		step <- struct{}{}
	}
	sub, err = b.broker.Subscribe(ctx, []string{onB.Topic("q1")}, last)
	require.NoError(t, err)
	defer sub.Close()
	go func() {
		for range 4 {
			step <- struct{}{}
		}
	}()
	rest, _, done := readAnswer(t, sub, 0)
	assert.True(t, done)
	assert.Equal(t, "t0 t1 t2 t3 t4 t5 t6 t7 t8 t9 ", text+rest)

	// Stop from B an answer running on A.
	finished := make(chan llm.Result, 1)
	onA = llm.NewAnswers(a.broker, llm.OpenAIChat, llm.WithOnFinish(func(r llm.Result) { finished <- r }))
	_, err = onA.Start(context.Background(), "q2", gen)
	require.NoError(t, err)
	step <- struct{}{}
	require.NoError(t, onB.Stop(context.Background(), "q2"))
	select {
	case res := <-finished:
		assert.ErrorIs(t, res.Err, llm.ErrStopped)
		assert.Equal(t, "t0 ", res.Text)
	case <-time.After(guard):
		t.Fatal("the answer was not stopped from the other instance")
	}
}
