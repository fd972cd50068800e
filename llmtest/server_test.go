// Package llmtest checks that the official SDKs of each dialect of package
// llm parse its streams completely, end cleanly, and raise its in-band
// errors: openai-go here, and the npm packages openai, @anthropic-ai/sdk
// and ai (the Vercel AI SDK) in node_test.go. It is a module of its own so
// that the core depends on gin only.
package llmtest

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/gin-gonic/gin"
	"go.uber.org/goleak"

	sse "github.com/gin-sse/sse"
	"github.com/gin-sse/sse/llm"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

// required reports whether missing tools are failures (CI) rather than
// reasons to skip.
func required() bool { return os.Getenv("SSE_E2E_REQUIRED") == "1" }

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if required() {
		t.Fatalf("SSE_E2E_REQUIRED=1 but %s", msg)
	}
	t.Skipf("skipping: %s (set SSE_E2E_REQUIRED=1 to make this a failure)", msg)
}

// The answer every route streams: reasoning, text in several deltas, one
// tool call, usage. A request for the model "fail" gets some text and
// then the in-band error failMessage.
const (
	answerText  = "Hello, world! Ça va?\nLine two: data: not a field"
	failMessage = "The model is overloaded."
	toolArgs    = `{"city":"Paris","unit":"celsius"}`
)

var answerUsage = llm.Usage{InputTokens: 11, OutputTokens: 17}

func generate(model string) llm.Generator {
	return func(ctx context.Context, out *llm.Output) error {
		if err := out.Reasoning("Let me think."); err != nil {
			return err
		}
		for _, part := range []string{"Hello, ", "world! ", "Ça va?\n", "Line two: ", "data: not a field"} {
			if err := out.Text(part); err != nil {
				return err
			}
		}
		if model == "fail" {
			return &llm.Error{Code: "overloaded", Message: failMessage}
		}
		if err := out.ToolCall("call_7", "get_weather"); err != nil {
			return err
		}
		for _, part := range []string{`{"city":`, `"Paris","unit":`, `"celsius"}`} {
			if err := out.ToolArgs(part); err != nil {
				return err
			}
		}
		out.SetUsage(answerUsage)
		return nil
	}
}

// server serves each dialect where its SDK expects it.
func server(t *testing.T) *httptest.Server {
	t.Helper()
	r := gin.New()
	type request struct {
		Model         string `json:"model"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	route := func(path string, d llm.Dialect) {
		r.POST(path, sse.Middleware(), func(c *gin.Context) {
			var req request
			if err := c.ShouldBindJSON(&req); err != nil {
				c.JSON(400, gin.H{"error": gin.H{"message": err.Error(), "type": "invalid_request_error"}})
				return
			}
			if err := llm.Stream(c, d, generate(req.Model), llm.WithModel(req.Model),
				llm.WithUsageChunk(req.StreamOptions.IncludeUsage)); err != nil {
				_ = c.Error(err)
			}
		})
	}
	route("/v1/chat/completions", llm.OpenAIChat)
	route("/v1/responses", llm.OpenAIResponses)
	route("/v1/messages", llm.Anthropic)
	route("/api/chat", llm.VercelUI)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv
}
