package sse_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadmeQuickStart checks that the program under the README's "Quick
// start" heading is _example/quickstart/main.go byte for byte, so that the
// README shows a program that builds, passes vet and runs (CI builds and
// vets every example).
func TestReadmeQuickStart(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	program, err := os.ReadFile("_example/quickstart/main.go")
	require.NoError(t, err)

	code, err := readmeGoBlock(string(readme), "## Quick start")
	require.NoError(t, err)
	assert.Equal(t, string(program), code,
		"the Go block under %q in README.md differs from _example/quickstart/main.go: change both", "## Quick start")
}

func TestReadmeGoBlock(t *testing.T) {
	tests := []struct {
		name, doc, want, err string
	}{
		{
			name: "first go block of the section",
			doc:  "# T\n\n## Quick start\n\ntext\n\n```sh\nls\n```\n\n```go\npackage main\n\nfunc main() {}\n```\n\n```go\nother\n```\n",
			want: "package main\n\nfunc main() {}\n",
		},
		{
			name: "a # line in another block is not a heading",
			doc:  "## Quick start\n\n```sh\n# run it\n```\n\n```go\npackage main\n```\n",
			want: "package main\n",
		},
		{
			name: "block of the next section is not taken",
			doc:  "## Quick start\n\nno code\n\n## Next\n\n```go\npackage main\n```\n",
			err:  "no ```go block",
		},
		{
			name: "heading must be a whole line",
			doc:  "### Quick start, later\n\n```go\npackage main\n```\n",
			err:  "no heading",
		},
		{
			name: "unterminated block",
			doc:  "## Quick start\n\n```go\npackage main\n",
			err:  "not closed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readmeGoBlock(tt.doc, "## Quick start")
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// readmeGoBlock returns the text of the first ```go block in the section of
// doc under the line heading, up to the next heading of the same or a
// higher level, with its final newline and without the fences.
func readmeGoBlock(doc, heading string) (string, error) {
	lines := strings.SplitAfter(doc, "\n")
	level := strings.Index(heading, " ") // "## x" is level 2
	start := -1
	for i, l := range lines {
		if strings.TrimRight(l, "\n") == heading {
			start = i + 1
			break
		}
	}
	if start < 0 {
		return "", errors.New("no heading " + heading)
	}
	var code strings.Builder
	in, other := false, false // inside the go block; inside another fenced block
	for _, l := range lines[start:] {
		line := strings.TrimRight(l, "\n")
		switch {
		case in && line == "```":
			return code.String(), nil
		case in:
			code.WriteString(l)
		case other:
			other = !strings.HasPrefix(line, "```")
		case line == "```go":
			in = true
		case strings.HasPrefix(line, "```"):
			other = true
		case isHeading(line, level):
			return "", errors.New("no ```go block under " + heading)
		}
	}
	if in {
		return "", errors.New("the ```go block under " + heading + " is not closed")
	}
	return "", errors.New("no ```go block under " + heading)
}

// isHeading reports whether line is a Markdown heading of level at most
// level.
func isHeading(line string, level int) bool {
	n := len(line) - len(strings.TrimLeft(line, "#"))
	return n >= 1 && n <= level && strings.HasPrefix(line[n:], " ")
}
