package main

import (
	"context"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/gin-sse/sse/llm"
)

const modelName = "fake-1"

// model is a fake language model: its answer to a question depends only
// on its seed and the question, and it writes it a token at a time, with
// a pause to "think" first and 15 to 60 ms per token.
type model struct {
	seed  uint64
	speed float64 // 1: a real model's pace; 10: ten times faster
}

var sentences = []string{
	"Server-Sent Events keep one HTTP response open and write each event as a few lines of text.",
	"The browser's EventSource reconnects by itself and sends the id of the last event it saw.",
	"A broker keeps each topic's recent events, so a client that comes back gets exactly what it missed.",
	"Tokens are merged when they come close together, which saves writes without making anyone wait.",
	"Heartbeats keep proxies from closing a stream while the model is thinking.",
	"An error after the first token cannot change the status code, so it travels inside the stream.",
	"This answer is written by a fake model, so the example needs no network and no API key.",
	"Reload the page while it writes and the answer continues where it was.",
	"Open a second tab and it follows the same answer, token by token.",
	"The stop button ends the answer on the server, for every tab that follows it.",
}

// tokens returns the answer to question as tokens (words with their
// spaces), and the pause before each.
func (m *model) tokens(question string) ([]string, []time.Duration) {
	h := fnv.New64a()
	_, _ = h.Write([]byte(strings.TrimSpace(question)))
	rng := rand.New(rand.NewPCG(m.seed, h.Sum64()))
	var words []string
	for i, n := 0, 3+rng.IntN(4); i < n; i++ {
		words = append(words, strings.Fields(sentences[rng.IntN(len(sentences))])...)
	}
	toks := make([]string, len(words))
	pauses := make([]time.Duration, len(words))
	for i, w := range words {
		if i > 0 {
			w = " " + w
		}
		toks[i] = w
		pauses[i] = m.scale(time.Duration(15+rng.IntN(46)) * time.Millisecond)
	}
	pauses[0] = m.scale(time.Duration(300+rng.IntN(500)) * time.Millisecond) // thinking
	return toks, pauses
}

func (m *model) scale(d time.Duration) time.Duration {
	if m.speed <= 0 {
		return d
	}
	return time.Duration(float64(d) / m.speed)
}

// write writes the answer to question with emit, at the model's pace.
func (m *model) write(ctx context.Context, question string, emit func(string) error) (llm.Usage, error) {
	toks, pauses := m.tokens(question)
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for i, tok := range toks {
		t.Reset(pauses[i])
		select {
		case <-ctx.Done():
			return llm.Usage{}, ctx.Err()
		case <-t.C:
		}
		if err := emit(tok); err != nil {
			return llm.Usage{}, err
		}
	}
	return llm.Usage{InputTokens: len(strings.Fields(question)), OutputTokens: len(toks)}, nil
}

// generator streams the answer to question.
func (m *model) generator(question string) llm.Generator {
	return func(ctx context.Context, out *llm.Output) error {
		usage, err := m.write(ctx, question, out.Text)
		out.SetUsage(usage)
		return err
	}
}

// complete returns the whole answer to question.
func (m *model) complete(ctx context.Context, question string) (string, llm.Usage, error) {
	var b strings.Builder
	usage, err := m.write(ctx, question, func(s string) error { b.WriteString(s); return nil })
	return b.String(), usage, err
}
