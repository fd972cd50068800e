// Package e2e runs the example apps of the repository as real processes and
// drives them with a real browser (Debian's chromium, through chromedp) and
// a second, independent client (the npm eventsource package under Node).
//
// Without chromium, node or npm the tests that need them skip, saying what
// to install; with SSE_E2E_REQUIRED=1 (as in CI) they fail instead.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// binDir holds the example binaries built by the tests.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sse-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	http.DefaultClient.CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// required reports whether missing tools fail the tests instead of
// skipping them.
func required() bool { return os.Getenv("SSE_E2E_REQUIRED") == "1" }

// missing skips t, or fails it under SSE_E2E_REQUIRED=1, for a missing tool.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if required() {
		t.Fatalf("SSE_E2E_REQUIRED=1 but %s", msg)
	}
	t.Skipf("skipping: %s (set SSE_E2E_REQUIRED=1 to make this a failure)", msg)
}

// repoRoot is the root of the repository (the main module).
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	return root
}

var (
	buildMu sync.Mutex
	built   = map[string]error{}
)

// build builds the example app name once per test run, with the race
// detector when the tests run with it, and returns the binary's path.
func build(t testing.TB, name string) string {
	t.Helper()
	bin := filepath.Join(binDir, name)
	buildMu.Lock()
	defer buildMu.Unlock()
	err, done := built[name]
	if !done {
		// An example that is a module of its own builds in its folder.
		dir, pkg := repoRoot(t), "./_example/"+name
		if _, err := os.Stat(filepath.Join(dir, "_example", name, "go.mod")); err == nil {
			dir, pkg = filepath.Join(dir, "_example", name), "."
		}
		args := []string{"build", "-C", dir, "-o", bin}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, pkg)
		out, buildErr := exec.Command("go", args...).CombinedOutput()
		if buildErr != nil {
			err = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), buildErr, out)
		}
		built[name] = err
	}
	require.NoError(t, err)
	return bin
}

// app is a running example app.
type app struct {
	t    testing.TB
	bin  string
	args []string
	cmd  *exec.Cmd
	out  *logBuffer
	addr string // host:port it listens on
	URL  string // http://host:port
	done chan struct{}
	err  error // of Wait, once done is closed
}

// startApp builds and starts the example app name on a free port of
// 127.0.0.1 with the extra flags args, and stops it when the test ends.
func startApp(t testing.TB, name string, args ...string) *app {
	t.Helper()
	a := &app{t: t, bin: build(t, name), args: args}
	a.start("127.0.0.1:0")
	t.Cleanup(func() {
		if a.running() {
			a.stop()
		}
	})
	return a
}

var listenLine = regexp.MustCompile(`on http://(\S+)`)

// start starts the process on addr and waits until it listens.
func (a *app) start(addr string) {
	t := a.t
	t.Helper()
	a.out = newLogBuffer()
	a.cmd = exec.Command(a.bin, append([]string{"-addr", addr}, a.args...)...)
	// No race detector's 1 s pause at exit (a race still fails the test).
	a.cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	a.cmd.Stdout = a.out
	a.cmd.Stderr = a.out
	require.NoError(t, a.cmd.Start())
	a.done = make(chan struct{})
	go func() {
		a.err = a.cmd.Wait()
		close(a.done)
	}()
	select {
	case line := <-a.out.listening:
		a.addr = listenLine.FindStringSubmatch(line)[1]
		a.URL = "http://" + a.addr
	case <-a.done:
		t.Fatalf("%s exited before listening: %v\n%s", a.bin, a.err, a.out)
	case <-time.After(30 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
		t.Fatalf("%s did not listen within 30 s\n%s", a.bin, a.out)
	}
}

func (a *app) running() bool {
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, which the apps answer with a graceful shutdown, and
// checks that the process exits promptly, cleanly and without a data race
// report.
func (a *app) stop() {
	t := a.t
	t.Helper()
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
		t.Errorf("%s did not exit within 15 s of SIGTERM\n%s", a.bin, a.out)
	}
	if a.err != nil {
		t.Errorf("%s exited with %v\n%s", a.bin, a.err, a.out)
	}
	if strings.Contains(a.out.String(), "DATA RACE") {
		t.Errorf("%s reported a data race:\n%s", a.bin, a.out)
	}
}

// restart starts the app again on the same address.
func (a *app) restart() {
	a.t.Helper()
	a.start(a.addr)
}

// logBuffer collects a process's output and reports its listen line.
type logBuffer struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	listening chan string
	seen      bool
}

func newLogBuffer() *logBuffer { return &logBuffer{listening: make(chan string, 1)} }

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if !l.seen {
		sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
		for sc.Scan() {
			if listenLine.MatchString(sc.Text()) {
				l.seen = true
				l.listening <- sc.Text()
				break
			}
		}
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// chromiumPath returns the browser to drive, or skips (fails under
// SSE_E2E_REQUIRED=1) when there is none.
func chromiumPath(t testing.TB) string {
	t.Helper()
	for _, p := range []string{os.Getenv("SSE_CHROMIUM"), "/usr/bin/chromium"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	missing(t, "chromium is not installed (Debian: apt-get install -y chromium; or set SSE_CHROMIUM to a Chromium binary)")
	return ""
}

// newBrowser starts a headless chromium with a fresh profile and returns
// the context of its first tab. It closes when the test ends.
func newBrowser(t testing.TB) context.Context {
	t.Helper()
	path := chromiumPath(t)
	profile := t.TempDir() // removed after the browser exits (cleanups run last-in first-out)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1200, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	// Start the browser now, with a context that has no timeout: it lives
	// as long as ctx.
	require.NoError(t, chromedp.Do(ctx), "starting %s", path)
	return ctx
}

// newTab opens another tab in the browser of ctx; cancel closes it.
func newTab(t testing.TB, browser context.Context) (context.Context, context.CancelFunc) {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	require.NoError(t, chromedp.Do(ctx))
	t.Cleanup(cancel)
	return ctx, cancel
}

// open navigates the tab of ctx to url.
func open(t testing.TB, ctx context.Context, url string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Do(tctx, chromedp.Navigate(url)), "open %s", url)
}

// eval evaluates a JavaScript expression in the tab of ctx.
func eval[T any](t testing.TB, ctx context.Context, js string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](js))
	require.NoError(t, err, "evaluate %s", js)
	return v
}

// waitFor polls the JavaScript expression js in the tab of ctx until it is
// truthy and returns its value. The timeout only guards against a hang:
// it fails the test with the page's text.
func waitFor[T any](t testing.TB, ctx context.Context, timeout time.Duration, js string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Poll[T](js,
		chromedp.WithPollingInterval(20*time.Millisecond),
		chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("waiting %v for %s: %v\npage text:\n%s", timeout, js, err, text)
	}
	return v
}

// postJSON posts body to url and decodes the JSON answer.
func postJSON(t testing.TB, url string, body any) (int, map[string]any) {
	t.Helper()
	b, err := json.Marshal(body)
	require.NoError(t, err)
	res, err := http.Post(url, "application/json", bytes.NewReader(b))
	require.NoError(t, err)
	defer res.Body.Close()
	return res.StatusCode, decodeJSON(t, res)
}

// getJSON gets url and decodes the JSON answer into a value of type T.
func getJSON[T any](t testing.TB, url string) (int, T) {
	t.Helper()
	var v T
	res, err := http.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(res.Header.Get("Content-Type"), "application/json"), "Content-Type %q of %s: %s", res.Header.Get("Content-Type"), url, body)
	require.NoError(t, json.Unmarshal(body, &v), "%s: %s", url, body)
	return res.StatusCode, v
}

func decodeJSON(t testing.TB, res *http.Response) map[string]any {
	t.Helper()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(res.Header.Get("Content-Type"), "application/json"), "Content-Type %q: %s", res.Header.Get("Content-Type"), body)
	var v map[string]any
	require.NoError(t, json.Unmarshal(body, &v), "%s", body)
	return v
}

// proxy is a TCP proxy between the browser and an app that the test can
// cut (every connection closed, the port refused) and restore on the same
// port, while the app keeps running.
type proxy struct {
	t      testing.TB
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	p := &proxy{t: t, target: target, conns: map[net.Conn]struct{}{}}
	p.listen("127.0.0.1:0")
	p.addr = p.ln.Addr().String()
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) URL() string { return "http://" + p.addr }

func (p *proxy) listen(addr string) {
	p.t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(p.t, err)
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() { p.accept(ln) })
}

func (p *proxy) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		if p.ln != ln { // cut meanwhile
			p.mu.Unlock()
			_ = c.Close()
			_ = up.Close()
			return
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		p.wg.Go(func() { pipe(up, c) })
		p.wg.Go(func() { pipe(c, up) })
	}
}

// cut closes the listener and every connection, and waits for the proxy's
// goroutines to end. Clients then get "connection refused".
func (p *proxy) cut() {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	for _, c := range conns {
		_ = c.Close()
	}
	p.wg.Wait()
}

// restore listens again on the same port.
func (p *proxy) restore() {
	p.t.Helper()
	p.listen(p.addr)
}
