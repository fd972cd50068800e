package llmtest

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The npm packages the tests install: the newest releases that run on
// Node 20.
var npmPackages = []string{"openai@6.49.0", "@anthropic-ai/sdk@1.17.0", "ai@6.0.333"}

// nodeClients reads one answer with the official client of a dialect
// (argv[2]) from the server at argv[3] for the model argv[4], and prints
// what it parsed as JSON: the text, reasoning, tool calls, usage and
// finish reason, or the error the client raised.
const nodeClients = `import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { DefaultChatTransport, readUIMessageStream } from 'ai';

const [mode, base, model] = process.argv.slice(2);
const result = { text: '', reasoning: '', tools: [], usage: null, finish: null, error: null, events: 0 };

async function openaiChat() {
  const client = new OpenAI({ baseURL: base + '/v1', apiKey: 'test', maxRetries: 0 });
  const runner = client.chat.completions.stream({
    model, messages: [{ role: 'user', content: 'Hi' }], stream_options: { include_usage: true },
  });
  runner.on('chunk', () => result.events++);
  const done = await runner.finalChatCompletion();
  const msg = done.choices[0].message;
  result.text = msg.content;
  result.tools = (msg.tool_calls ?? []).map((t) => ({ id: t.id, name: t.function.name, args: t.function.arguments }));
  result.usage = [done.usage.prompt_tokens, done.usage.completion_tokens];
  result.finish = done.choices[0].finish_reason;
}

async function openaiResponses() {
  const client = new OpenAI({ baseURL: base + '/v1', apiKey: 'test', maxRetries: 0 });
  const stream = client.responses.stream({ model, input: 'Hi' });
  stream.on('event', () => result.events++);
  const done = await stream.finalResponse();
  // A failed response ends the stream too: its status and error tell.
  if (done.status !== 'completed') throw new Error('response ' + done.status + ': ' + done.error?.message);
  result.text = done.output_text;
  for (const item of done.output) {
    if (item.type === 'reasoning') result.reasoning = item.content.map((c) => c.text).join('');
    if (item.type === 'function_call') result.tools.push({ id: item.call_id, name: item.name, args: item.arguments });
  }
  result.usage = [done.usage.input_tokens, done.usage.output_tokens];
  result.finish = done.status;
}

async function anthropic() {
  const client = new Anthropic({ baseURL: base, apiKey: 'test', maxRetries: 0 });
  const stream = client.messages.stream({ model, max_tokens: 1024, messages: [{ role: 'user', content: 'Hi' }] });
  stream.on('streamEvent', () => result.events++);
  const msg = await stream.finalMessage();
  for (const block of msg.content) {
    if (block.type === 'text') result.text += block.text;
    if (block.type === 'thinking') result.reasoning += block.thinking;
    if (block.type === 'tool_use') result.tools.push({ id: block.id, name: block.name, args: JSON.stringify(block.input) });
  }
  result.usage = [msg.usage.input_tokens, msg.usage.output_tokens];
  result.finish = msg.stop_reason;
}

async function vercel() {
  const transport = new DefaultChatTransport({ api: base + '/api/chat', body: { model } });
  const chunks = await transport.sendMessages({
    chatId: 'chat-1', trigger: 'submit-message', messageId: undefined, abortSignal: undefined,
    messages: [{ id: 'u1', role: 'user', parts: [{ type: 'text', text: 'Hi' }] }],
  });
  const [counted, read] = chunks.tee();
  const counting = (async () => {
    for await (const chunk of counted) {
      result.events++;
      if (chunk.type === 'finish') result.finish = chunk.finishReason;
    }
  })();
  let last;
  for await (const message of readUIMessageStream({ stream: read, terminateOnError: true })) last = message;
  await counting;
  for (const part of last.parts) {
    if (part.type === 'text') result.text += part.text;
    if (part.type === 'reasoning') result.reasoning += part.text;
    if (part.type.startsWith('tool-') || part.type === 'dynamic-tool') {
      result.tools.push({ id: part.toolCallId, name: part.toolName ?? part.type.slice(5), args: JSON.stringify(part.input), state: part.state });
    }
  }
}

const modes = { 'openai-chat': openaiChat, 'openai-responses': openaiResponses, anthropic, vercel };
try {
  await modes[mode]();
} catch (e) {
  result.error = (result.error ? result.error + ' / ' : '') + (e?.message ?? String(e));
}
console.log(JSON.stringify(result));
`

type nodeResult struct {
	Text      string `json:"text"`
	Reasoning string `json:"reasoning"`
	Tools     []struct {
		ID    string `json:"id"`
		Name  string `json:"name"`
		Args  string `json:"args"`
		State string `json:"state"`
	} `json:"tools"`
	Usage  []int  `json:"usage"`
	Finish string `json:"finish"`
	Error  string `json:"error"`
	Events int    `json:"events"`
}

// nodeSDKs installs the npm packages in a temporary directory.
func nodeSDKs(t *testing.T) (dir, node string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		missing(t, "node is not installed (Node 20 or later, with npm)")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		missing(t, "npm is not installed")
	}
	dir = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, append([]string{"install", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error"}, npmPackages...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		missing(t, "npm install %v failed (is the npm registry reachable?): %v\n%s", npmPackages, err, out)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "clients.mjs"), []byte(nodeClients), 0o644))
	return dir, node
}

func runNode(t *testing.T, dir, node, mode, base, model string) nodeResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "clients.mjs", mode, base, model)
	cmd.Dir = dir
	out, err := cmd.Output()
	require.NoError(t, err, "node %s: %s", mode, out)
	var res nodeResult
	require.NoError(t, json.Unmarshal(out, &res), "node %s printed %s", mode, out)
	return res
}

func TestNodeSDKs(t *testing.T) {
	dir, node := nodeSDKs(t)
	srv := server(t)
	for _, tc := range []struct {
		mode, finish, reasoning string
		usage                   bool
	}{
		{"openai-chat", "tool_calls", "", true},
		{"openai-responses", "completed", "Let me think.", true},
		{"anthropic", "tool_use", "Let me think.", true},
		{"vercel", "tool-calls", "Let me think.", false},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			res := runNode(t, dir, node, tc.mode, srv.URL, "gpt-test")
			require.Empty(t, res.Error)
			assert.Equal(t, answerText, res.Text)
			assert.Equal(t, tc.reasoning, res.Reasoning)
			require.Len(t, res.Tools, 1)
			assert.Equal(t, "call_7", res.Tools[0].ID)
			assert.Equal(t, "get_weather", res.Tools[0].Name)
			assert.JSONEq(t, toolArgs, res.Tools[0].Args)
			assert.Equal(t, tc.finish, res.Finish)
			if tc.usage {
				assert.Equal(t, []int{11, 17}, res.Usage)
			}
			t.Logf("%s: %d events; text %q, reasoning %q, tool %s(%s), usage %v, finish %s",
				tc.mode, res.Events, res.Text, res.Reasoning, res.Tools[0].Name, res.Tools[0].Args, res.Usage, res.Finish)

			res = runNode(t, dir, node, tc.mode, srv.URL, "fail")
			assert.Contains(t, res.Error, failMessage, "the in-band error is raised")
			t.Logf("%s, failing: %s", tc.mode, res.Error)
		})
	}
}
