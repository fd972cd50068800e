package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gin-sse/sse/ssetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// roomDevices are the devices of each room of the smart-home example.
var roomDevices = map[string][]string{
	"kitchen":    {"lights", "blinds"},
	"livingroom": {"lights", "curtains"},
	"bedroom":    {"lights", "curtains"},
}

var roomOrder = []string{"kitchen", "livingroom", "bedroom"}

// pageEvent is an entry of the page's window.__events.
type pageEvent struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data string `json:"data"`
}

func (e pageEvent) state(t testing.TB) map[string]string {
	t.Helper()
	var s map[string]string
	require.NoError(t, json.Unmarshal([]byte(e.Data), &s), "data of %s event %s", e.Type, e.ID)
	return s
}

// idSeq splits a broker id "<epoch>-<n>" and returns its parts.
func idSeq(t testing.TB, id string) (string, uint64) {
	t.Helper()
	epoch, n, ok := strings.Cut(id, "-")
	require.True(t, ok, "id %q is not <epoch>-<n>", id)
	seq, err := strconv.ParseUint(n, 10, 64)
	require.NoError(t, err, "id %q", id)
	return epoch, seq
}

// checkState checks that s is a valid state of room.
func checkState(t testing.TB, room string, s map[string]string) {
	t.Helper()
	assert.Equal(t, room, s["room"])
	assert.Contains(t, []string{"on", "off"}, s["lights"], "lights of %s", room)
	other := roomDevices[room][1]
	assert.Contains(t, []string{"open", "closed"}, s[other], "%s of %s", other, room)
	_, err := time.Parse(time.RFC3339Nano, s["updated"])
	assert.NoError(t, err, "updated of %s", room)
	assert.Len(t, s, 4, "fields of %s: %v", room, s)
}

// Page expressions.
const (
	jsConnected = `document.getElementById('state').dataset.state === 'connected'`
	jsEvents    = `window.__events`
)

func jsValue(room, device string) string {
	return fmt.Sprintf(`document.getElementById(%q).textContent`, room+"-"+device)
}

func jsValueIs(room, device, value string) string {
	return fmt.Sprintf(`%s === %q`, jsValue(room, device), value)
}

func jsStateIs(state string) string {
	return fmt.Sprintf(`document.getElementById('state').dataset.state === %q`, state)
}

// rooms returns the current state of every room, by name.
func rooms(t testing.TB, a *app) map[string]map[string]string {
	t.Helper()
	status, all := getJSON[[]map[string]string](t, a.URL+"/rooms")
	require.Equal(t, http.StatusOK, status)
	out := map[string]map[string]string{}
	for _, s := range all {
		out[s["room"]] = s
	}
	require.Len(t, out, 3)
	return out
}

// waitShows waits until the page shows the state of every room in want.
func waitShows(t testing.TB, ctx context.Context, want map[string]map[string]string) {
	t.Helper()
	for room, s := range want {
		for _, dev := range roomDevices[room] {
			waitFor[bool](t, ctx, 10*time.Second, jsValueIs(room, dev, s[dev]))
		}
		waitFor[bool](t, ctx, 10*time.Second, fmt.Sprintf(`document.querySelector('#%s time').dateTime === %q`, room, s["updated"]))
	}
}

// TestSmartHomePage: the page connects and shows every room; a change
// POSTed from outside appears within a second; the page's own controls
// change the state on the server.
func TestSmartHomePage(t *testing.T) {
	ctx := newBrowser(t)
	a := startApp(t, "smart-home", "-simulate=false")

	open(t, ctx, a.URL)
	waitFor[bool](t, ctx, 10*time.Second, jsConnected)
	waitShows(t, ctx, rooms(t, a))
	events := waitFor[[]pageEvent](t, ctx, 10*time.Second, `window.__events.length >= 3 && window.__events`)
	require.Len(t, events, 3, "the initial events")
	for i, ev := range events {
		assert.Equal(t, roomOrder[i], ev.Type)
		checkState(t, ev.Type, ev.state(t))
		idSeq(t, ev.ID)
	}

	// A change from another client.
	status, answer := postJSON(t, a.URL+"/rooms/kitchen", map[string]string{"lights": "off", "blinds": "closed"})
	require.Equal(t, http.StatusOK, status, "%v", answer)
	start := time.Now()
	waitFor[bool](t, ctx, 5*time.Second, jsValueIs("kitchen", "lights", "off")+" && "+jsValueIs("kitchen", "blinds", "closed"))
	latency := time.Since(start)
	t.Logf("a POSTed change reached the page in %v", latency)
	assert.Less(t, latency, time.Second, "a POSTed change must appear within a second")

	// The page's own control: its POST changes the server's state, and the
	// answer and the event show on the page.
	before := rooms(t, a)["bedroom"]
	require.Equal(t, "open", before["curtains"])
	label := eval[string](t, ctx, `document.querySelector('button[data-room="bedroom"][data-device="curtains"]').getAttribute('aria-label')`)
	assert.Equal(t, "Close bedroom curtains", label)
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Do(tctx, chromedp.Click(chromedp.CSS(`button[data-room="bedroom"][data-device="curtains"]`))))
	waitFor[bool](t, ctx, 5*time.Second, jsValueIs("bedroom", "curtains", "closed"))
	after := rooms(t, a)["bedroom"]
	assert.Equal(t, "closed", after["curtains"])
	assert.Equal(t, before["lights"], after["lights"])
	waitShows(t, ctx, map[string]map[string]string{"bedroom": after})
	// The button now offers the opposite, and the change is in the log.
	waitFor[bool](t, ctx, 5*time.Second, `document.querySelector('button[data-room="bedroom"][data-device="curtains"]').textContent === 'Open'`)
	waitFor[bool](t, ctx, 5*time.Second, `document.getElementById('log').textContent.includes('Bedroom: curtains open → closed')`)
	assert.False(t, eval[bool](t, ctx, `document.getElementById('error').checkVisibility()`), "no error shown")
	assert.False(t, eval[bool](t, ctx, `document.getElementById('lost').checkVisibility()`), "no events-lost note")
}

// TestSmartHomeReplayAcrossReconnect cuts the browser's connection (a proxy
// between the browser and the app) while the app keeps running, makes
// several changes meanwhile, and checks that after the browser reconnected
// by itself with Last-Event-ID the page got every change, in order, once.
func TestSmartHomeReplayAcrossReconnect(t *testing.T) {
	ctx := newBrowser(t)
	a := startApp(t, "smart-home", "-simulate=false")
	p := startProxy(t, a.addr)

	open(t, ctx, p.URL())
	waitFor[bool](t, ctx, 10*time.Second, jsConnected)
	initial := waitFor[[]pageEvent](t, ctx, 10*time.Second, `window.__events.length >= 3 && window.__events`)
	require.Len(t, initial, 3)
	epoch, lastSeq := idSeq(t, initial[2].ID)

	p.cut()
	waitFor[bool](t, ctx, 10*time.Second, jsStateIs("reconnecting"))

	changes := []struct {
		room string
		set  map[string]string
	}{
		{"kitchen", map[string]string{"lights": "off"}},
		{"bedroom", map[string]string{"curtains": "closed"}},
		{"kitchen", map[string]string{"lights": "on", "blinds": "closed"}},
		{"livingroom", map[string]string{"lights": "off"}},
		{"kitchen", map[string]string{"lights": "off"}},
		{"livingroom", map[string]string{"curtains": "closed", "lights": "on"}},
	}
	var posted []map[string]any
	for _, c := range changes {
		status, answer := postJSON(t, a.URL+"/rooms/"+c.room, c.set)
		require.Equal(t, http.StatusOK, status, "%v", answer)
		posted = append(posted, answer)
	}
	// The page is still cut off: it has seen none of them.
	assert.Len(t, eval[[]pageEvent](t, ctx, jsEvents), 3)

	p.restore()
	waitFor[bool](t, ctx, 15*time.Second, jsConnected)
	all := waitFor[[]pageEvent](t, ctx, 10*time.Second, fmt.Sprintf(`window.__events.length >= %d && window.__events`, 3+len(changes)))
	got := all[3:]
	require.Len(t, got, len(changes), "every change once, no duplicate: %v", got)
	for i, ev := range got {
		assert.Equal(t, changes[i].room, ev.Type, "event %d", i)
		var want map[string]string
		b, _ := json.Marshal(posted[i])
		require.NoError(t, json.Unmarshal(b, &want))
		assert.Equal(t, want, ev.state(t), "event %d is the state the POST answered", i)
		e, seq := idSeq(t, ev.ID)
		assert.Equal(t, epoch, e)
		assert.Greater(t, seq, lastSeq, "ids increase")
		lastSeq = seq
	}
	waitShows(t, ctx, rooms(t, a))
	assert.False(t, eval[bool](t, ctx, `document.getElementById('lost').checkVisibility()`), "no events-lost note")

	// Live events flow again.
	status, answer := postJSON(t, a.URL+"/rooms/bedroom", map[string]string{"lights": "off"})
	require.Equal(t, http.StatusOK, status, "%v", answer)
	waitFor[bool](t, ctx, 5*time.Second, jsValueIs("bedroom", "lights", "off"))
}

// TestSmartHomeServerRestart stops the app (SIGTERM, graceful) and starts
// it again on the same port. The in-memory history does not survive a
// restart, so the page is told its events were lost and gets the new
// process's current state.
func TestSmartHomeServerRestart(t *testing.T) {
	ctx := newBrowser(t)
	a := startApp(t, "smart-home", "-simulate=false")

	open(t, ctx, a.URL)
	waitFor[bool](t, ctx, 10*time.Second, jsConnected)
	status, answer := postJSON(t, a.URL+"/rooms/kitchen", map[string]string{"lights": "off"})
	require.Equal(t, http.StatusOK, status, "%v", answer)
	waitFor[bool](t, ctx, 5*time.Second, jsValueIs("kitchen", "lights", "off"))
	before := len(eval[[]pageEvent](t, ctx, jsEvents))

	start := time.Now()
	a.stop()
	t.Logf("the app exited %v after SIGTERM with a stream open", time.Since(start))
	waitFor[bool](t, ctx, 10*time.Second, jsStateIs("reconnecting"))

	a.restart()
	waitFor[bool](t, ctx, 15*time.Second, jsConnected)
	// The new process starts with the lights on: the page shows its state.
	waitShows(t, ctx, rooms(t, a))
	assert.Equal(t, "on", eval[string](t, ctx, jsValue("kitchen", "lights")))

	all := waitFor[[]pageEvent](t, ctx, 10*time.Second, fmt.Sprintf(`window.__events.length >= %d && window.__events`, before+4))
	after := all[before:]
	require.Equal(t, "events-lost", after[0].Type, "%v", after)
	var lost struct{ Reason, LastEventID string }
	require.NoError(t, json.Unmarshal([]byte(after[0].Data), &lost))
	assert.Equal(t, "unknown", lost.Reason)
	assert.Equal(t, all[before-1].ID, lost.LastEventID, "the browser sent its last id")
	for i, room := range roomOrder {
		assert.Equal(t, room, after[1+i].Type, "the initial events follow the signal")
	}
	waitFor[bool](t, ctx, 5*time.Second, `document.getElementById('lost').checkVisibility() && document.getElementById('lost-text').textContent.includes('the server restarted')`)

	// And the new process's changes arrive live.
	status, answer = postJSON(t, a.URL+"/rooms/livingroom", map[string]string{"curtains": "closed"})
	require.Equal(t, http.StatusOK, status, "%v", answer)
	waitFor[bool](t, ctx, 5*time.Second, jsValueIs("livingroom", "curtains", "closed"))
}

// TestSmartHomeBadInput: invalid changes are refused with 400 and a JSON
// error, change nothing and publish nothing; unknown rooms on the stream
// get the broker's 404.
func TestSmartHomeBadInput(t *testing.T) {
	a := startApp(t, "smart-home", "-simulate=false")
	before := rooms(t, a)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := ssetest.Connect(ctx, nil, a.URL+"/smart-home?room=kitchen&room=bedroom", nil)
	require.NoError(t, err)
	defer stream.Close()
	for _, room := range []string{"kitchen", "bedroom"} {
		ev, err := stream.Next()
		require.NoError(t, err)
		assert.Equal(t, room, ev.Event, "initial events of the rooms asked for, in order")
	}

	for _, tc := range []struct{ name, room, body, want string }{
		{"unknown room", "attic", `{"lights":"on"}`, "unknown room"},
		{"unknown device", "kitchen", `{"curtains":"open"}`, "unknown device"},
		{"unknown device name", "bedroom", `{"tv":"on"}`, "unknown device"},
		{"bad value", "kitchen", `{"lights":"dim"}`, "bad value"},
		{"one bad value among good ones", "livingroom", `{"lights":"off","curtains":"ajar"}`, "bad value"},
		{"value not a string", "kitchen", `{"lights":true}`, "JSON object"},
		{"not an object", "kitchen", `["lights"]`, "JSON object"},
		{"not JSON", "kitchen", `lights=on`, "JSON object"},
		{"empty body", "kitchen", ``, "JSON object"},
		{"no device", "kitchen", `{}`, "no device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := http.Post(a.URL+"/rooms/"+tc.room, "application/json", strings.NewReader(tc.body))
			require.NoError(t, err)
			defer res.Body.Close()
			assert.Equal(t, http.StatusBadRequest, res.StatusCode)
			body := decodeJSON(t, res)
			assert.Contains(t, body["error"], tc.want)
		})
	}

	for _, tc := range []struct {
		query  string
		status int
		want   string
	}{
		{"?room=nope", http.StatusNotFound, "unknown topic"},
		{"?room=kitchen&room=nope", http.StatusNotFound, "unknown topic"},
		{"?room=", http.StatusBadRequest, "invalid topic"},
	} {
		t.Run("GET /smart-home"+tc.query, func(t *testing.T) {
			res, err := http.Get(a.URL + "/smart-home" + tc.query)
			require.NoError(t, err)
			defer res.Body.Close()
			assert.Equal(t, tc.status, res.StatusCode)
			body := decodeJSON(t, res)
			assert.Contains(t, body["error"], tc.want)
		})
	}
	status, body := getJSON[map[string]string](t, a.URL+"/rooms/attic")
	assert.Equal(t, http.StatusNotFound, status)
	assert.Contains(t, body["error"], "unknown room")

	assert.Equal(t, before, rooms(t, a), "nothing changed")
	// Nothing was published either: the next event is the next good change.
	status, answer := postJSON(t, a.URL+"/rooms/bedroom", map[string]string{"lights": "off"})
	require.Equal(t, http.StatusOK, status, "%v", answer)
	ev, err := stream.Next()
	require.NoError(t, err)
	assert.Equal(t, "bedroom", ev.Event)
	assert.Contains(t, ev.Data, `"lights":"off"`)
}
