package sse_test

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Each entry point takes its own option type: an option given where it does
// not apply is a compile error, not a setting silently ignored. The
// snippets are type-checked against the package's export data.
func TestMisusedOptionsDoNotCompile(t *testing.T) {
	cmd := exec.Command("go", "list", "-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}", ".")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list -export")
	exports := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		path, file, _ := strings.Cut(sc.Text(), "\t")
		exports[path] = file
	}
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		return os.Open(exports[path])
	})
	check := func(body string) error {
		src := `package p
import (
	"time"
	"github.com/gin-gonic/gin"
	"github.com/gin-sse/sse"
)
var _ = time.Second
func f(b *sse.Broker, c *gin.Context, ch chan int) {
	` + body + `
}`
		file, err := parser.ParseFile(fset, "p.go", src, 0)
		require.NoError(t, err, body)
		_, err = (&types.Config{Importer: imp}).Check("p", fset, []*ast.File{file}, nil)
		return err
	}

	// The right options in the right places compile.
	require.NoError(t, check(`
		_, _ = sse.NewBroker(sse.WithRetention(1<<20, time.Minute), sse.WithMaxPerIP(4), sse.WithTopics("a"))
		_ = b.Handler(sse.Topics("a"), sse.WithAuthorize(nil), sse.WithHeartbeat(time.Second), sse.WithRetry(time.Second), sse.WithDone(nil))
		_ = sse.Middleware(sse.WithHeartbeat(time.Second), sse.WithWriteTimeout(time.Second), sse.WithRequireAccept(), sse.WithLastEventIDQuery("since"))
		_ = sse.NewWriter(nil, nil, sse.WithWriteTimeout(time.Second), sse.WithRetry(time.Second))
		_ = sse.Stream(c, ch, sse.WithEventName("n"))
		_ = sse.NewDecoder(nil, sse.WithMaxEventSize(1), sse.WithLastEventID("1"))`))

	tests := []struct{ code, missing string }{
		{`sse.NewDecoder(nil, sse.WithMaxTopics(1))`, "applyDecoder"},
		{`sse.NewDecoder(nil, sse.WithTopics("a"))`, "applyDecoder"},
		{`sse.NewBroker(sse.WithMaxEventSize(1))`, "applyBroker"},
		{`sse.NewBroker(sse.WithEventName("x"))`, "applyBroker"},
		{`sse.NewBroker(sse.WithHeartbeat(time.Second))`, "applyBroker"},
		{`sse.NewBroker(sse.WithAuthorize(nil))`, "applyBroker"},
		{`b.Handler(sse.Topics("a"), sse.WithMaxPerIP(1))`, "applyHandler"},
		{`b.Handler(sse.Topics("a"), sse.WithMaxSubscribers(1))`, "applyHandler"},
		{`b.Handler(sse.Topics("a"), sse.WithOnSubscribe(nil))`, "applyHandler"},
		{`b.Handler(sse.Topics("a"), sse.WithEventName("x"))`, "applyHandler"},
		{`sse.Middleware(sse.WithAuthorize(nil))`, "middlewareOption"},
		{`sse.Middleware(sse.WithEventName("x"))`, "applyHandler"},
		{`sse.Middleware(sse.WithBackend(nil))`, "applyHandler"},
		{`sse.NewWriter(nil, nil, sse.WithHeartbeat(time.Second))`, "writerOption"},
		{`sse.NewWriter(nil, nil, sse.WithDone(nil))`, "writerOption"},
		{`sse.Stream(c, ch, sse.WithHeartbeat(time.Second))`, "applyStream"},
		{`sse.Stream(c, ch, sse.WithWriteTimeout(time.Second))`, "applyStream"},
	}
	for _, tt := range tests {
		err := check("_ = " + tt.code)
		if assert.Error(t, err, tt.code) {
			assert.Contains(t, err.Error(), "(missing method "+tt.missing+")", tt.code)
		}
	}
}
