package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/ssetest"
)

// scrape reads /metrics of url and returns its families by name.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(url + "/metrics")
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	require.NoError(t, err)
	return families
}

// value returns the value of the series of family name whose labels
// include labels (name=value pairs).
func value(t *testing.T, families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := families[name]
	require.True(t, ok, "no metric %s", name)
	for _, m := range f.Metric {
		match := true
		for i := 0; i < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no series of %s with %v", name, labels)
	return 0
}

// TestScrapeAfterKnownTraffic: two users' streams and one news stream;
// 5 publishes to user:1, 3 to news, 1 refused; user:1's client leaves; a
// reconnect to news with an id the broker never gave gets a loss signal
// and the news it still has.
func TestScrapeAfterKnownTraffic(t *testing.T) {
	gin.SetMode(gin.TestMode)
	reg := prometheus.NewRegistry()
	b, err := newBroker(reg)
	require.NoError(t, err)
	defer b.Shutdown(context.Background())
	srv := httptest.NewServer(newRouter(b, reg))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leaving, cancelLeaving := context.WithCancel(ctx)
	user1, err := ssetest.Connect(leaving, nil, srv.URL+"/events?topic=user:1", nil)
	require.NoError(t, err)
	user2, err := ssetest.Connect(ctx, nil, srv.URL+"/events?topic=user:2", nil)
	require.NoError(t, err)
	defer user2.Close()
	news, err := ssetest.Connect(ctx, nil, srv.URL+"/events?topic=news", nil)
	require.NoError(t, err)
	defer news.Close()
	require.Eventually(t, func() bool { return b.Subscribers("") == 3 }, 5*time.Second, time.Millisecond)

	publish := func(topic string) int {
		res, err := http.Post(srv.URL+"/publish?topic="+topic, "text/plain", strings.NewReader("x"))
		require.NoError(t, err)
		_ = res.Body.Close()
		return res.StatusCode
	}
	for range 5 {
		require.Equal(t, http.StatusOK, publish("user:1"))
	}
	for range 3 {
		require.Equal(t, http.StatusOK, publish("news"))
	}
	require.Equal(t, http.StatusBadRequest, publish(""), "no topic")
	for range 5 {
		_, err := user1.Next()
		require.NoError(t, err)
	}
	for range 3 {
		_, err := news.Next()
		require.NoError(t, err)
	}
	cancelLeaving()
	_ = user1.Close()
	require.Eventually(t, func() bool { return b.Subscribers("") == 2 }, 5*time.Second, time.Millisecond)
	lost, err := ssetest.Connect(ctx, nil, srv.URL+"/events?topic=news", http.Header{"Last-Event-ID": {"nonsense"}})
	require.NoError(t, err)
	ev, err := lost.Next()
	require.NoError(t, err)
	require.Equal(t, sse.LostEventName, ev.Event)
	for range 3 { // then the news events the broker still has
		_, err := lost.Next()
		require.NoError(t, err)
	}

	m := scrape(t, srv.URL)
	assert.Equal(t, 1.0, value(t, m, "sse_subscribers", "topic", "user"), "user:1 left, user:2 stays")
	assert.Equal(t, 2.0, value(t, m, "sse_subscribers", "topic", "news"), "news and the reconnect")
	assert.Equal(t, 2.0, value(t, m, "sse_subscriptions_total", "topic", "user"))
	assert.Equal(t, 2.0, value(t, m, "sse_subscriptions_total", "topic", "news"))
	assert.Equal(t, 1.0, value(t, m, "sse_unsubscriptions_total", "reason", "client_gone"))
	assert.Equal(t, 5.0, value(t, m, "sse_events_published_total", "topic", "user"))
	assert.Equal(t, 3.0, value(t, m, "sse_events_published_total", "topic", "news"))
	assert.Equal(t, 5.0, value(t, m, "sse_publish_duration_seconds", "topic", "user"), "one observation per publish")
	assert.Equal(t, 1.0, value(t, m, "sse_publish_errors_total", "topic", ""))
	assert.Equal(t, 12.0, value(t, m, "sse_events_delivered_total"), "5 + 3 events, a loss signal and 3 events again")
	assert.Equal(t, 1.0, value(t, m, "sse_events_lost_total", "reason", "unknown"))
	for name := range m {
		assert.True(t, strings.HasPrefix(name, "sse_"), name)
	}
}
