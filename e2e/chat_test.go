package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	jsAnswer      = `document.getElementById('answer').textContent`
	jsAnswerState = `document.getElementById('answer').dataset.state`
)

// fullAnswer asks the chat example's OpenAI-compatible endpoint, without
// streaming, for its (deterministic) answer to question.
func fullAnswer(t *testing.T, url, question string) string {
	t.Helper()
	status, body := postJSON(t, url+"/v1/chat/completions", map[string]any{
		"model": "fake", "messages": []map[string]string{{"role": "user", "content": question}},
	})
	require.Equal(t, http.StatusOK, status, "%v", body)
	text := body["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"].(string)
	require.NotEmpty(t, text)
	return text
}

// ask types question into the chat page of tab and sends it.
func ask(t *testing.T, tab context.Context, question string) {
	t.Helper()
	q, err := json.Marshal(question)
	require.NoError(t, err)
	eval[bool](t, tab, `document.getElementById('input').value = `+string(q)+`, document.getElementById('ask').requestSubmit(), true`)
}

// TestChatResumesAcrossReloadAndTabs asks in one tab, reloads it
// mid-answer and opens a second tab mid-answer: both end with the whole
// answer, each token once.
func TestChatResumesAcrossReloadAndTabs(t *testing.T) {
	a := startApp(t, "chat")
	const question = "How do resumable answers work?"
	want := fullAnswer(t, a.URL, question)

	browser := newBrowser(t)
	tab1, _ := newTab(t, browser)
	open(t, tab1, a.URL)
	ask(t, tab1, question)
	partial := waitFor[string](t, tab1, 20*time.Second, jsAnswerState+` === 'streaming' && `+jsAnswer+`.length > 10 && `+jsAnswer)
	require.True(t, strings.HasPrefix(want, partial), "%q is not the start of %q", partial, want)

	// Reload mid-answer, and open a second tab.
	open(t, tab1, a.URL)
	tab2, _ := newTab(t, browser)
	open(t, tab2, a.URL)
	mid := eval[string](t, tab2, jsAnswerState)
	got1 := waitFor[string](t, tab1, 30*time.Second, jsAnswerState+` === 'done' && `+jsAnswer)
	got2 := waitFor[string](t, tab2, 30*time.Second, jsAnswerState+` === 'done' && `+jsAnswer)
	assert.Equal(t, want, got1, "the reloaded tab has the whole answer once")
	assert.Equal(t, want, got2, "the second tab has the whole answer once")
	assert.Less(t, len(partial), len(want), "the reload came mid-answer")
	t.Logf("reloaded after %d of %d bytes; the second tab opened while the answer was %q", len(partial), len(want), mid)
}

// TestChatStopFromAnotherTab stops an answer from a second tab: both tabs
// end with the same, shorter text.
func TestChatStopFromAnotherTab(t *testing.T) {
	a := startApp(t, "chat")
	const question = "Tell me about heartbeats"
	want := fullAnswer(t, a.URL, question)

	browser := newBrowser(t)
	tab1, _ := newTab(t, browser)
	open(t, tab1, a.URL)
	ask(t, tab1, question)
	waitFor[bool](t, tab1, 20*time.Second, jsAnswerState+` === 'streaming'`)
	tab2, _ := newTab(t, browser)
	open(t, tab2, a.URL)
	waitFor[bool](t, tab2, 20*time.Second, jsAnswerState+` === 'streaming' && !document.getElementById('stop').hidden`)
	eval[bool](t, tab2, `document.getElementById('stop').click(), true`)
	got1 := waitFor[string](t, tab1, 30*time.Second, jsAnswerState+` === 'done' && `+jsAnswer)
	got2 := waitFor[string](t, tab2, 30*time.Second, jsAnswerState+` === 'done' && `+jsAnswer)
	assert.Equal(t, got1, got2)
	assert.True(t, strings.HasPrefix(want, got1), "%q is not the start of %q", got1, want)
	assert.Less(t, len(got1), len(want), "the answer stopped early")
}
