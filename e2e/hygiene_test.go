package e2e

// The tests of this file check that the smart-home example bounds what a
// client sends: a request body is limited in size (413) and in time (408,
// the server's ReadTimeout), an error answer never echoes the input back,
// and a malformed or oversized ?room= query is refused instead of widening
// the subscription to every room. They run the example binary, as the other
// tests of the package do, and need neither a browser nor node.

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-sse/sse/ssetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hygieneMaxBody is the body limit of POST /rooms/:room in the example.
const hygieneMaxBody = 4 << 10

// hygieneMaxAnswer bounds the length of an error answer: a fixed message and
// at most a few dozen bytes of the input.
const hygieneMaxAnswer = 200

// fillReader gives an endless run of one byte and counts what it gave.
type fillReader struct {
	b byte
	n atomic.Int64
}

func (f *fillReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = f.b
	}
	f.n.Add(int64(len(p)))
	return len(p), nil
}

// hygieneDo sends req and returns the status, Content-Type and body of the
// answer (the body read up to 1 MiB, which is far more than any answer of
// the example should be). An event stream, which does not end, is not read:
// its body is returned empty.
func hygieneDo(t testing.TB, req *http.Request) (int, string, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(req.Context(), 30*time.Second)
	defer cancel()
	res, err := http.DefaultClient.Do(req.WithContext(ctx))
	require.NoError(t, err, "%s %.80s", req.Method, req.URL)
	defer res.Body.Close()
	ctype := res.Header.Get("Content-Type")
	if strings.HasPrefix(ctype, "text/event-stream") {
		return res.StatusCode, ctype, nil
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	require.NoError(t, err)
	return res.StatusCode, ctype, body
}

// hygieneGet gets url and returns the status, Content-Type and body.
func hygieneGet(t testing.TB, url string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	return hygieneDo(t, req)
}

// hygienePost posts body to url as JSON and returns the status, Content-Type
// and body of the answer.
func hygienePost(t testing.TB, url string, body io.Reader) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, body)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	return hygieneDo(t, req)
}

// rssBytes returns the resident set size of process pid, or 0 where
// /proc is not available.
func rssBytes(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			require.NoError(t, err, "VmRSS line %q", line)
			return kb << 10
		}
	}
	return 0
}

// TestSmartHomeBodyLimit: a request body longer than the limit gets a short
// 413 at once, whether its length is declared or it streams without end,
// and the process does not grow with it; a body within the limit still
// works; an error answer quotes at most a few dozen bytes of the input.
func TestSmartHomeBodyLimit(t *testing.T) {
	a := startApp(t, "smart-home", "-simulate=false")
	url := a.URL + "/rooms/kitchen"
	before := rooms(t, a)
	rss0 := rssBytes(t, a.cmd.Process.Pid)

	t.Run("200 MB streamed body", func(t *testing.T) {
		// {"lights":"aaaa… with no end in sight, sent chunked (no
		// Content-Length), so only reading it finds that it is too long.
		f := &fillReader{b: 'a'}
		body := io.MultiReader(strings.NewReader(`{"lights":"`), io.LimitReader(f, 200<<20))
		start := time.Now()
		status, ctype, answer := hygienePost(t, url, body)
		took := time.Since(start)
		t.Logf("%d after %v and %d MB handed to the client", status, took, f.n.Load()>>20)
		assert.Equal(t, http.StatusRequestEntityTooLarge, status, "%.200s", answer)
		assert.True(t, strings.HasPrefix(ctype, "application/json"), "Content-Type %q", ctype)
		assert.Less(t, len(answer), hygieneMaxAnswer, "a short answer: %.300s", answer)
		assert.Contains(t, string(answer), "body larger than")
		assert.NotContains(t, string(answer), "aaaaaaaa", "the body is not echoed")
		assert.Less(t, took, 10*time.Second, "the answer comes at once")
		assert.Less(t, f.n.Load(), int64(100<<20), "the server stopped reading long before the end")
	})

	t.Run("200 MB declared body", func(t *testing.T) {
		f := &fillReader{b: ' '}
		req, err := http.NewRequest(http.MethodPost, url, io.LimitReader(f, 200<<20))
		require.NoError(t, err)
		req.ContentLength = 200 << 20
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		status, _, answer := hygieneDo(t, req)
		took := time.Since(start)
		t.Logf("%d after %v and %d MB handed to the client", status, took, f.n.Load()>>20)
		assert.Equal(t, http.StatusRequestEntityTooLarge, status, "%.200s", answer)
		assert.Less(t, len(answer), hygieneMaxAnswer, "a short answer: %.300s", answer)
		assert.Less(t, took, 10*time.Second, "the answer comes at once")
		assert.Less(t, f.n.Load(), int64(100<<20), "the server did not read the body")
	})

	t.Run("valid change after a long body", func(t *testing.T) {
		// A valid object padded with spaces is still too long: the
		// limit is on the whole body, not on the JSON value read first.
		body := `{"lights":"off"}` + strings.Repeat(" ", hygieneMaxBody)
		status, _, answer := hygienePost(t, url, strings.NewReader(body))
		assert.Equal(t, http.StatusRequestEntityTooLarge, status, "%.200s", answer)
	})

	if rss0 > 0 {
		rss1 := rssBytes(t, a.cmd.Process.Pid)
		t.Logf("resident size %d MB before the long bodies, %d MB after", rss0>>20, rss1>>20)
		assert.Less(t, rss1-rss0, int64(64<<20), "the process does not grow with the bodies")
	}
	assert.Equal(t, before, rooms(t, a), "nothing changed")

	t.Run("body at the limit works", func(t *testing.T) {
		change := `{"lights":"off"}`
		body := change + strings.Repeat(" ", hygieneMaxBody-len(change))
		require.Len(t, body, hygieneMaxBody)
		status, _, answer := hygienePost(t, url, strings.NewReader(body))
		require.Equal(t, http.StatusOK, status, "%s", answer)
		assert.Contains(t, string(answer), `"lights":"off"`)
		assert.Equal(t, "off", rooms(t, a)["kitchen"]["lights"])
	})

	long := strings.Repeat("x", 3000)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"long unknown device", http.MethodPost, "/rooms/kitchen", `{"` + long + `":"on"}`, http.StatusBadRequest, "unknown device"},
		{"long bad value", http.MethodPost, "/rooms/kitchen", `{"lights":"` + long + `"}`, http.StatusBadRequest, "bad value"},
		{"long value of a wrong type", http.MethodPost, "/rooms/kitchen", `{"lights":["` + long + `"]}`, http.StatusBadRequest, "JSON object"},
		{"long malformed body", http.MethodPost, "/rooms/kitchen", long, http.StatusBadRequest, "JSON object"},
		{"long unknown room on POST", http.MethodPost, "/rooms/" + long, `{"lights":"on"}`, http.StatusBadRequest, "unknown room"},
		{"long unknown room on GET", http.MethodGet, "/rooms/" + long, ``, http.StatusNotFound, "unknown room"},
		{"long unknown room on the stream", http.MethodGet, "/smart-home?room=y" + long[:200], ``, http.StatusNotFound, "unknown topic"},
		{"long invalid room on the stream", http.MethodGet, "/smart-home?room=" + long, ``, http.StatusBadRequest, "invalid topic"},
	} {
		t.Run("no echo: "+tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequest(tc.method, a.URL+tc.path, body)
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			status, ctype, answer := hygieneDo(t, req)
			assert.Equal(t, tc.status, status, "%.300s", answer)
			assert.True(t, strings.HasPrefix(ctype, "application/json"), "Content-Type %q", ctype)
			assert.Contains(t, string(answer), tc.want)
			assert.Less(t, len(answer), hygieneMaxAnswer, "a short answer: %.300s", answer)
			assert.NotContains(t, string(answer), strings.Repeat("x", 64), "at most a few dozen bytes of the input")
		})
	}
}

// TestSmartHomeBodyTimeout: a body that does not arrive within the server's
// ReadTimeout gets 408 and the connection is closed, while a stream open
// much longer than the ReadTimeout is not cut and still gets live events.
func TestSmartHomeBodyTimeout(t *testing.T) {
	const readTimeout = time.Second
	a := startApp(t, "smart-home", "-simulate=false", "-read-timeout", readTimeout.String())

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := ssetest.Connect(ctx, nil, a.URL+"/smart-home?room=kitchen", nil)
	require.NoError(t, err)
	defer stream.Close()
	opened := time.Now()
	ev, err := stream.Next()
	require.NoError(t, err)
	require.Equal(t, "kitchen", ev.Event)

	t.Run("slow body", func(t *testing.T) {
		conn, err := net.Dial("tcp", a.addr)
		require.NoError(t, err)
		defer conn.Close()
		require.NoError(t, conn.SetDeadline(time.Now().Add(15*time.Second)))
		start := time.Now()
		_, err = io.WriteString(conn, "POST /rooms/kitchen HTTP/1.1\r\nHost: "+a.addr+"\r\n"+
			"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"+`{"lig`)
		require.NoError(t, err)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err, "an answer, not a connection held open")
		answer, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		_ = res.Body.Close()
		took := time.Since(start)
		t.Logf("%d after %v", res.StatusCode, took)
		assert.Equal(t, http.StatusRequestTimeout, res.StatusCode, "%s", answer)
		assert.Contains(t, string(answer), "not received in time")
		assert.GreaterOrEqual(t, took, readTimeout/2)
		assert.Less(t, took, readTimeout+5*time.Second)
		// The server closes the connection after the answer.
		_, err = conn.Read(make([]byte, 1))
		assert.ErrorIs(t, err, io.EOF)
	})

	// By now the stream has been open for more than the ReadTimeout.
	time.Sleep(2*readTimeout - time.Since(opened))
	status, answer := postJSON(t, a.URL+"/rooms/kitchen", map[string]string{"lights": "off"})
	require.Equal(t, http.StatusOK, status, "%v", answer)
	ev, err = stream.Next()
	require.NoError(t, err, "the stream outlives the ReadTimeout")
	assert.Equal(t, "kitchen", ev.Event)
	assert.Contains(t, ev.Data, `"lights":"off"`)
}

// TestSmartHomeRoomQuery: ?room= is parsed strictly. A malformed pair, a
// query of more than 10,000 pairs (which url.Values parsing drops whole) or
// too many room= values get 400 and an unknown room 404, never a stream of
// every room; valid queries still stream the rooms asked for, and no room=
// at all still means every room.
func TestSmartHomeRoomQuery(t *testing.T) {
	a := startApp(t, "smart-home", "-simulate=false")

	repeat := func(pair string, n int) string {
		return strings.TrimSuffix(strings.Repeat(pair+"&", n), "&")
	}
	for _, tc := range []struct {
		name, query string
		status      int
		want        string
	}{
		{"bad escape", "?room=%zz", http.StatusBadRequest, "malformed query"},
		{"bad escape after a good room", "?room=kitchen&room=%zz", http.StatusBadRequest, "malformed query"},
		{"bad escape in another key", "?x=%zz&room=kitchen", http.StatusBadRequest, "malformed query"},
		{"bad escape in a key", "?room%zz=kitchen", http.StatusBadRequest, "malformed query"},
		{"semicolon separator", "?room=kitchen;room=bedroom", http.StatusBadRequest, "malformed query"},
		{"10,001 rooms", "?" + repeat("room=kitchen", 10_001), http.StatusBadRequest, "malformed query"},
		{"10,000 other pairs and a room", "?" + repeat("x=1", 10_000) + "&room=kitchen", http.StatusBadRequest, "malformed query"},
		{"65 room values", "?" + repeat("room=kitchen", 65), http.StatusBadRequest, "too many room"},
		{"unknown room", "?room=attic", http.StatusNotFound, "unknown topic"},
		{"unknown room after a good one", "?room=kitchen&room=attic", http.StatusNotFound, "unknown topic"},
		{"empty room", "?room=", http.StatusBadRequest, "invalid topic"},
		{"room with a control character", "?room=kitchen%0A", http.StatusBadRequest, "invalid topic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, ctype, answer := hygieneGet(t, a.URL+"/smart-home"+tc.query)
			assert.Equal(t, tc.status, status, "%.300s", answer)
			assert.True(t, strings.HasPrefix(ctype, "application/json"), "an error, not a stream: Content-Type %q", ctype)
			assert.Contains(t, string(answer), tc.want)
			assert.Less(t, len(answer), hygieneMaxAnswer, "a short answer: %.300s", answer)
		})
	}

	// streamRooms opens the stream of query and returns the rooms of its
	// initial events, which come first, one per room subscribed to.
	streamRooms := func(t *testing.T, query string, n int) []string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stream, err := ssetest.Connect(ctx, nil, a.URL+"/smart-home"+query, nil)
		require.NoError(t, err)
		defer stream.Close()
		var got []string
		for range n {
			ev, err := stream.Next()
			require.NoError(t, err)
			got = append(got, ev.Event)
		}
		return got
	}
	t.Run("valid rooms", func(t *testing.T) {
		assert.Equal(t, []string{"kitchen", "bedroom"}, streamRooms(t, "?room=kitchen&room=bedroom", 2))
	})
	t.Run("valid rooms among other keys", func(t *testing.T) {
		assert.Equal(t, []string{"livingroom"}, streamRooms(t, "?x=1&room=livingroom&y=%20", 1))
	})
	t.Run("64 room values", func(t *testing.T) {
		// Duplicates count once: a stream of the kitchen only. Its next
		// event is the next kitchen change, not another room's state.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stream, err := ssetest.Connect(ctx, nil, a.URL+"/smart-home?"+repeat("room=kitchen", 64), nil)
		require.NoError(t, err)
		defer stream.Close()
		ev, err := stream.Next()
		require.NoError(t, err)
		assert.Equal(t, "kitchen", ev.Event)
		status, answer := postJSON(t, a.URL+"/rooms/bedroom", map[string]string{"lights": "off"})
		require.Equal(t, http.StatusOK, status, "%v", answer)
		status, answer = postJSON(t, a.URL+"/rooms/kitchen", map[string]string{"blinds": "closed"})
		require.Equal(t, http.StatusOK, status, "%v", answer)
		ev, err = stream.Next()
		require.NoError(t, err)
		assert.Equal(t, "kitchen", ev.Event)
		assert.Contains(t, ev.Data, `"blinds":"closed"`)
	})
	t.Run("no room means every room", func(t *testing.T) {
		assert.Equal(t, roomOrder, streamRooms(t, "", 3))
	})
}
