package e2e

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

const jsCount = `document.getElementById('count').textContent`

// TestLiveUsers opens the page in two tabs: both show 2 within a second;
// closing one brings the other back to 1.
func TestLiveUsers(t *testing.T) {
	first := newBrowser(t)
	a := startApp(t, "live-users")

	open(t, first, a.URL)
	waitFor[bool](t, first, 10*time.Second, jsConnected+` && `+jsCount+` === '1'`)
	assert.Equal(t, "person has this page open right now (you)", eval[string](t, first, `document.getElementById('count-label').textContent`))

	second, closeSecond := newTab(t, first)
	open(t, second, a.URL)
	start := time.Now()
	waitFor[bool](t, first, 5*time.Second, jsCount+` === '2'`)
	waitFor[bool](t, second, 5*time.Second, jsConnected+` && `+jsCount+` === '2'`)
	took := time.Since(start)
	t.Logf("both pages showed 2 users %v after the second page loaded", took)
	assert.Less(t, took, time.Second, "both pages show 2 within a second")
	assert.Equal(t, "2 online · Live users", eval[string](t, first, `document.title`))

	start = time.Now()
	closeSecond()
	waitFor[bool](t, first, 5*time.Second, jsCount+` === '1'`)
	took = time.Since(start)
	t.Logf("the first page showed 1 user %v after the second tab was closed", took)
	assert.Less(t, took, time.Second, "closing a page brings the count back within a second")
	assert.Equal(t, "connected", eval[string](t, first, `document.getElementById('state').dataset.state`))
}
