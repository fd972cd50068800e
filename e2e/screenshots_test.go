package e2e

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// TestScreenshots takes screenshots of the example pages showing live
// data and checks they are PNG images. With SSE_SCREENSHOTS=1 it writes them
// over the README's _example/*/screenshot.png; otherwise to a temporary
// directory:
//
//	cd e2e && SSE_SCREENSHOTS=1 go test -run TestScreenshots ./...
func TestScreenshots(t *testing.T) {
	root := t.TempDir()
	if os.Getenv("SSE_SCREENSHOTS") == "1" {
		root = repoRoot(t)
	} else {
		for _, app := range []string{"smart-home", "live-users", "chat"} {
			require.NoError(t, os.MkdirAll(filepath.Join(root, "_example", app), 0o755))
		}
	}
	browser := newBrowser(t)

	t.Run("smart-home", func(t *testing.T) {
		a := startApp(t, "smart-home", "-simulate=false")
		ctx, _ := newTab(t, browser)
		setViewport(t, ctx, 1100, 800)
		open(t, ctx, a.URL)
		waitFor[bool](t, ctx, 10*time.Second, jsConnected)
		// A few changes, as the simulator would make them, for the list of
		// recent changes.
		for _, c := range []struct{ room, device, value string }{
			{"bedroom", "curtains", "closed"},
			{"kitchen", "blinds", "closed"},
			{"livingroom", "lights", "off"},
			{"bedroom", "lights", "off"},
			{"kitchen", "blinds", "open"},
			{"livingroom", "curtains", "closed"},
		} {
			status, answer := postJSON(t, a.URL+"/rooms/"+c.room, map[string]string{c.device: c.value})
			require.Equal(t, http.StatusOK, status, "%v", answer)
		}
		waitFor[bool](t, ctx, 10*time.Second, `document.querySelectorAll('#log li time').length === 6`)
		screenshot(t, ctx, filepath.Join(root, "_example", "smart-home", "screenshot.png"))
	})
	t.Run("live-users", func(t *testing.T) {
		a := startApp(t, "live-users")
		ctx, _ := newTab(t, browser)
		setViewport(t, ctx, 800, 640)
		open(t, ctx, a.URL)
		other, _ := newTab(t, browser)
		open(t, other, a.URL)
		waitFor[bool](t, ctx, 10*time.Second, jsConnected+` && `+jsCount+` === '2'`)
		screenshot(t, ctx, filepath.Join(root, "_example", "live-users", "screenshot.png"))
	})
	t.Run("chat", func(t *testing.T) {
		a := startApp(t, "chat")
		ctx, _ := newTab(t, browser)
		setViewport(t, ctx, 900, 560)
		open(t, ctx, a.URL)
		ask(t, ctx, "What happens if I reload the page while you answer?")
		waitFor[bool](t, ctx, 30*time.Second, jsAnswerState+` === 'done'`)
		screenshot(t, ctx, filepath.Join(root, "_example", "chat", "screenshot.png"))
	})
}

func setViewport(t *testing.T, ctx context.Context, w, h int64) {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(w, h)))
}

func screenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	// Let the highlight animations end.
	waitFor[bool](t, ctx, 5*time.Second, `document.getAnimations().length === 0`)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")), "not a PNG")
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("wrote %s (%d bytes)", path, len(png))
}
