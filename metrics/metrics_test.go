package ssemetrics_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gin-sse/sse"
	ssemetrics "github.com/gin-sse/sse/metrics"
)

func TestUnsubscribeReasons(t *testing.T) {
	for err, want := range map[error]string{
		nil:                       "closed",
		sse.ErrSubscriptionClosed: "closed",
		fmt.Errorf("%w: %w", sse.ErrClientGone, context.Canceled): "client_gone",
		sse.ErrBrokerClosed:          "shutdown",
		sse.ErrWriteTimeout:          "write_timeout",
		sse.ErrWriteFailed:           "write_failed",
		context.DeadlineExceeded:     "context",
		errors.New("something else"): "other",
	} {
		assert.Equal(t, want, ssemetrics.UnsubscribeReason(err), "%v", err)
	}
}

func TestNamesAndLabels(t *testing.T) {
	m := ssemetrics.New(ssemetrics.WithNamespace("app"), ssemetrics.WithConstLabels(prometheus.Labels{"broker": "chat"}))
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(m))
	info := sse.SubscriberInfo{Topics: []string{"a", "b"}}
	m.Subscribed(info)
	m.Subscribed(info)
	m.Unsubscribed(info, sse.ErrBrokerClosed)
	m.Published([]string{"a"}, time.Millisecond, nil)
	m.Published([]string{"a"}, time.Millisecond, errors.New("down"))
	m.Delivered(3)
	m.Lost(fmt.Errorf("%w: %w", sse.ErrEventsLost, sse.ErrDataLoss))
	m.BackendError("replay", errors.New("down"))
	m.BackendDelivered(20 * time.Millisecond)

	n, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	assert.Equal(t, 10, n, "one series each, no topic label without WithTopicLabel")
	families, err := reg.Gather()
	require.NoError(t, err)
	values := map[string]float64{}
	for _, f := range families {
		if v := f.Metric[0]; v.Gauge != nil {
			values[f.GetName()] = v.Gauge.GetValue()
		} else if v.Counter != nil {
			values[f.GetName()] = v.Counter.GetValue()
		}
		for _, s := range f.Metric {
			labels := map[string]string{}
			for _, l := range s.Label {
				labels[l.GetName()] = l.GetValue()
			}
			assert.Equal(t, "chat", labels["broker"], f.GetName())
		}
	}
	assert.Equal(t, map[string]float64{
		"app_sse_subscribers": 1, "app_sse_subscriptions_total": 2, "app_sse_unsubscriptions_total": 1,
		"app_sse_events_published_total": 1, "app_sse_publish_errors_total": 1, "app_sse_events_delivered_total": 3,
		"app_sse_events_lost_total": 1, "app_sse_backend_errors_total": 1,
	}, values)
	lint, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, lint, "Prometheus naming conventions")
}
