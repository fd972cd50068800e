package llmtest

import (
	"context"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func client(srvURL string) openai.Client {
	return openai.NewClient(option.WithBaseURL(srvURL+"/v1/"), option.WithAPIKey("test"), option.WithMaxRetries(0))
}

func TestOpenAIGoChatCompletions(t *testing.T) {
	srv := server(t)
	c := client(srv.URL)
	stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:         "gpt-test",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var acc openai.ChatCompletionAccumulator
	chunks := 0
	for stream.Next() {
		require.True(t, acc.AddChunk(stream.Current()))
		chunks++
	}
	require.NoError(t, stream.Err())
	require.NoError(t, stream.Close())
	require.Len(t, acc.Choices, 1)
	msg := acc.Choices[0].Message
	assert.Equal(t, answerText, msg.Content)
	require.Len(t, msg.ToolCalls, 1)
	assert.Equal(t, "call_7", msg.ToolCalls[0].ID)
	assert.Equal(t, "get_weather", msg.ToolCalls[0].Function.Name)
	assert.Equal(t, toolArgs, msg.ToolCalls[0].Function.Arguments)
	assert.Equal(t, "tool_calls", acc.Choices[0].FinishReason)
	assert.Equal(t, int64(11), acc.Usage.PromptTokens)
	assert.Equal(t, int64(17), acc.Usage.CompletionTokens)
	assert.Equal(t, "gpt-test", acc.Model)
	t.Logf("openai-go chat completions: %d chunks, %q, tool call %s(%s), usage %d+%d",
		chunks, msg.Content, msg.ToolCalls[0].Function.Name, msg.ToolCalls[0].Function.Arguments, acc.Usage.PromptTokens, acc.Usage.CompletionTokens)

	// The in-band error ends the stream with an error.
	stream = c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:    "fail",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")},
	})
	text := ""
	for stream.Next() {
		if ch := stream.Current().Choices; len(ch) > 0 {
			text += ch[0].Delta.Content
		}
	}
	require.Error(t, stream.Err())
	assert.Contains(t, stream.Err().Error(), failMessage)
	assert.Equal(t, answerText, text, "the text before the error arrived")
	t.Logf("openai-go chat completions, failing: %v", stream.Err())
}

func TestOpenAIGoResponses(t *testing.T) {
	srv := server(t)
	c := client(srv.URL)
	run := func(model string) (text, args string, final *responses.Response, failed *responses.Response, events int, err error) {
		stream := c.Responses.NewStreaming(context.Background(), responses.ResponseNewParams{
			Model: shared.ResponsesModel(model),
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Hi")},
		})
		defer stream.Close()
		for stream.Next() {
			ev := stream.Current()
			events++
			switch ev.Type {
			case "response.output_text.delta":
				text += ev.AsResponseOutputTextDelta().Delta
			case "response.function_call_arguments.delta":
				args += ev.AsResponseFunctionCallArgumentsDelta().Delta
			case "response.completed":
				r := ev.AsResponseCompleted().Response
				final = &r
			case "response.failed":
				r := ev.AsResponseFailed().Response
				failed = &r
			}
		}
		return text, args, final, failed, events, stream.Err()
	}
	text, args, final, failed, events, err := run("gpt-test")
	require.NoError(t, err)
	assert.Nil(t, failed)
	assert.Equal(t, answerText, text)
	assert.Equal(t, toolArgs, args)
	require.NotNil(t, final)
	assert.Equal(t, responses.ResponseStatusCompleted, final.Status)
	assert.Equal(t, answerText, final.OutputText())
	require.Len(t, final.Output, 3)
	assert.Equal(t, "reasoning", final.Output[0].Type)
	fc := final.Output[2].AsFunctionCall()
	assert.Equal(t, "call_7", fc.CallID)
	assert.Equal(t, "get_weather", fc.Name)
	assert.Equal(t, toolArgs, fc.Arguments)
	assert.Equal(t, int64(11), final.Usage.InputTokens)
	assert.Equal(t, int64(17), final.Usage.OutputTokens)
	t.Logf("openai-go responses: %d events, output text %q, %s(%s)", events, final.OutputText(), fc.Name, fc.Arguments)

	// A failure ends the stream with response.failed, carrying the error.
	text, _, final, failed, _, err = run("fail")
	require.NoError(t, err)
	assert.Nil(t, final)
	require.NotNil(t, failed)
	assert.Equal(t, responses.ResponseStatusFailed, failed.Status)
	assert.Equal(t, failMessage, failed.Error.Message)
	assert.Equal(t, answerText, text)
	t.Logf("openai-go responses, failing: response.failed with %q", failed.Error.Message)
}
