package e2e

import (
	"bufio"
	"bytes"
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

// eventsourceVersion is the npm eventsource package the tests install
// (4.x supports Node 20; 5.x needs Node 22).
const eventsourceVersion = "4.1.1"

// nodeClient connects to the URL of argv[2] with the npm eventsource
// package, prints the first argv[3] room events as JSON lines and exits.
const nodeClient = `import { EventSource } from 'eventsource';

const [url, want] = [process.argv[2], Number(process.argv[3])];
const es = new EventSource(url);
let got = 0;
for (const type of ['kitchen', 'livingroom', 'bedroom', 'events-lost']) {
  es.addEventListener(type, (e) => {
    console.log(JSON.stringify({ type: e.type, data: e.data, lastEventId: e.lastEventId }));
    if (++got >= want) {
      es.close();
      process.exit(0);
    }
  });
}
es.addEventListener('error', (e) => console.error('eventsource error:', e.message ?? e.type));
setTimeout(() => { console.error('timed out after', got, 'events'); process.exit(2); }, 30000);
`

// nodeEventSource installs the npm eventsource package in a temporary
// directory and returns the directory and the node binary.
func nodeEventSource(t *testing.T) (dir, node string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		missing(t, "node is not installed (Node 20 or later, with npm: e.g. apt-get install -y nodejs npm where that gives Node 20+)")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		missing(t, "npm is not installed (Debian: apt-get install -y npm)")
	}
	dir = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error",
		"eventsource@"+eventsourceVersion)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		missing(t, "npm install eventsource@%s failed (is the npm registry reachable?): %v\n%s", eventsourceVersion, err, out)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "client.mjs"), []byte(nodeClient), 0o644))
	return dir, node
}

type nodeEvent struct {
	Type        string `json:"type"`
	Data        string `json:"data"`
	LastEventID string `json:"lastEventId"`
}

// runNodeClient reads n events from url with the Node client.
func runNodeClient(t *testing.T, dir, node, url string, n int) []nodeEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs", url, itoa(n))
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "node client.mjs %s: %s", url, stderr.String())
	var events []nodeEvent
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var ev nodeEvent
		require.NoError(t, json.Unmarshal(sc.Bytes(), &ev), "%s", sc.Text())
		events = append(events, ev)
	}
	require.Len(t, events, n, "stdout: %s\nstderr: %s", out, stderr.String())
	return events
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestSmartHomeNodeEventSource reads the smart-home stream with the npm
// eventsource package, a client independent of the browser and of this
// repository, while the simulator makes changes quickly.
func TestSmartHomeNodeEventSource(t *testing.T) {
	dir, node := nodeEventSource(t)
	a := startApp(t, "smart-home", "-simulate-min=20ms", "-simulate-max=60ms")

	t.Run("all rooms", func(t *testing.T) {
		events := runNodeClient(t, dir, node, a.URL+"/smart-home", 12)
		checkNodeEvents(t, events, roomOrder)
	})
	t.Run("some rooms", func(t *testing.T) {
		events := runNodeClient(t, dir, node, a.URL+"/smart-home?room=kitchen&room=bedroom", 6)
		checkNodeEvents(t, events, []string{"kitchen", "bedroom"})
	})
}

// checkNodeEvents checks events read from a stream subscribed to rooms:
// first the state of each room (one id, the broker's position), then live
// changes of those rooms only, with increasing ids of the same epoch.
func checkNodeEvents(t *testing.T, events []nodeEvent, rooms []string) {
	t.Helper()
	epoch, last := idSeq(t, events[0].LastEventID)
	for i, ev := range events {
		var s map[string]string
		require.NoError(t, json.Unmarshal([]byte(ev.Data), &s), "event %d: %s", i, ev.Data)
		checkState(t, ev.Type, s)
		assert.Contains(t, rooms, ev.Type, "event %d", i)
		e, seq := idSeq(t, ev.LastEventID)
		assert.Equal(t, epoch, e, "event %d", i)
		if i < len(rooms) {
			assert.Equal(t, rooms[i], ev.Type, "initial event %d", i)
			assert.Equal(t, events[0].LastEventID, ev.LastEventID, "initial events share the broker's position as id")
			continue
		}
		assert.Greater(t, seq, last, "event %d: ids increase", i)
		last = seq
	}
}
